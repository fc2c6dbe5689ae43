"""Fuzzing the zoo file: any content gives a valid zoo (entries and one-line errors) or one
``ZooFileError`` line, never another exception, and no message echoes an unbounded input."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idsuite.runners.models.zoo import MAX_ALIASES, MAX_DEPTH, ZooFileError, load_zoo

KEYS = ["id", "source", "repo", "revision", "path", "packages", "subdir", "file", "sha256", "base", "init_seed",
        "init_seeds", "family", "dtype", "tags", "notes", "trust_remote_code", "colour", "config", "tokenizer", "overrides"]
SOURCES = ["hub", "local", "package", "gguf", "random_init", "config", "ftp", "", None]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=300), st.sampled_from(SOURCES))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                         max_size=4), max_leaves=10)
entries = st.dictionaries(st.sampled_from(KEYS), values, max_size=8)
documents = st.one_of(values, st.fixed_dictionaries({"models": st.lists(st.one_of(entries, values), max_size=6)}))


def check(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "models.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            zoo = load_zoo(path)
        except ZooFileError as e:
            lines = [str(e)]
        else:
            lines = [str(err) for err in zoo.errors]
            assert all(entry.id for entry in zoo.entries.values())
        for line in lines:
            assert "\n" not in line and len(line) <= len(str(path)) + 400, line


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_any_structure_gives_a_zoo_or_one_line(document):
    check(yaml.safe_dump(document, allow_unicode=True))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=400))
def test_any_text_gives_a_zoo_or_one_line(text):
    check(text.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))


def test_alias_bombs_and_deep_nesting_are_refused_quickly():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)) + "models: []\n"
    deep = "models: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    for text, expected in ((bomb, f"more than {MAX_ALIASES} aliases"), (deep, f"deeper than {MAX_DEPTH}")):
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "models.yaml"
            path.write_text(text)
            try:
                load_zoo(path)
                raise AssertionError("accepted")
            except ZooFileError as e:
                assert expected in str(e)
        assert time.perf_counter() - start < 1.0
