"""Fuzzing the corpus loader: any local file (csv, json, jsonl, txt, parquet) with any content gives a
corpus of at least two string items or one ``CorpusError`` line, never another exception."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idsuite.runners.probing.corpus import CorpusError, CorpusSpec, load_corpus

cells = st.one_of(st.none(), st.integers(-1000, 1000), st.floats(allow_nan=True), st.booleans(), st.text(max_size=40))
rows = st.lists(st.dictionaries(st.sampled_from(["text", "pair", "other"]), cells, max_size=3), max_size=8)
SUFFIXES = [".csv", ".json", ".jsonl", ".txt", ".parquet"]


def write(path: Path, records: list[dict], raw: str | None) -> None:
    if raw is not None:
        path.write_text(raw, encoding="utf-8", errors="replace")
    elif path.suffix == ".parquet":
        pd.DataFrame(records).astype(str).to_parquet(path) if records else path.write_bytes(b"PAR1")
    elif path.suffix == ".csv":
        pd.DataFrame(records).to_csv(path, index=False)
    elif path.suffix == ".json":
        path.write_text(json.dumps(records))
    else:
        path.write_text("\n".join(json.dumps(r) if path.suffix == ".jsonl" else str(r.get("text")) for r in records))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=rows, raw=st.one_of(st.none(), st.text(max_size=200)), suffix=st.sampled_from(SUFFIXES),
       pair=st.sampled_from([None, "pair", "missing"]))
def test_any_local_file_gives_a_corpus_or_one_line(records, raw, suffix, pair):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"probe{suffix}"
        write(path, records, raw)
        try:
            corpus = load_corpus(CorpusSpec(source=str(path), pair_column=pair))
        except CorpusError as e:
            assert "\n" not in str(e) and len(str(e)) <= 500, str(e)
            return
        assert len(corpus.items) >= 2
        assert all(isinstance(t, str) and t.strip() and (p is None or isinstance(p, str)) for t, p in corpus.items)
