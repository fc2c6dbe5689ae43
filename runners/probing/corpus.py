"""Probe corpora, loaded with ``datasets``: the packaged Lee news corpus, hub datasets, local files."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pydantic

from idsuite.runners.models.hub import HubError, failure_cause, hub_reachable, offline_mode, resolved_commit, why_unreachable

if TYPE_CHECKING:
    import datasets

LEE = "lee"
MRPC = "mrpc"
LOCAL_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".txt": "text"}
SENTENCE_END = re.compile(r"([.!?][\"')\]]?)\s+(?=[\"'(\[]?[A-Z0-9])")


class CorpusError(Exception):
    """The corpus cannot be loaded; one line naming the source and the cause."""


class CorpusSpec(pydantic.BaseModel):
    """Where the probe sentences come from and how many are used.

    ``source``: ``lee`` (packaged, offline default), ``mrpc`` (GLUE MRPC from the hub, the paper's
    corpus), a hub dataset id, or a local .csv/.json/.jsonl/.parquet/.txt file. ``text_column`` and
    optional ``pair_column`` name the sentence fields (a pair is encoded as a sentence pair).
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    source: str = LEE
    config: str | None = None
    split: str = "train"
    text_column: str = "text"
    pair_column: str | None = None
    max_sequences: Annotated[int, pydantic.Field(ge=2)] = 200
    seed: Annotated[int, pydantic.Field(ge=0)] = 0


@dataclass(frozen=True)
class Corpus:
    """Probe items ``(text, pair or None)`` in a seeded order, with an id and a content hash."""

    corpus_id: str
    items: list[tuple[str, str | None]]

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.items).encode()).hexdigest()[:16]


def split_sentences(text: str) -> list[str]:
    """Rule-based sentence split: ., ! or ? followed by space and an upper-case letter or digit."""
    return [s.strip() for s in SENTENCE_END.sub("\\1\n", text.strip()).split("\n") if s.strip()]


def lee_path() -> Path:
    """``lee_background.cor`` (300 Australian news articles) shipped in gensim's test data."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError("corpus 'lee': the gensim package is not installed (pip install gensim)")
    path = Path(next(iter(spec.submodule_search_locations))) / "test" / "test_data" / "lee_background.cor"
    if not path.is_file():
        raise CorpusError(f"corpus 'lee': {path} is missing from the gensim package")
    return path


def sentence_items(documents: list[str], seed: int) -> list[tuple[str, str | None]]:
    """Single sentences and consecutive-sentence pairs (MRPC-style), half each, seeded.

    Pairs give sequences past the head size, where attention stops being identifiable; singles keep
    short ones. Each sentence is used once.
    """
    rng = random.Random(seed)
    items: list[tuple[str, str | None]] = []
    for doc in documents:
        sentences = split_sentences(doc)
        i = 0
        while i < len(sentences):
            if i + 1 < len(sentences) and rng.random() < 0.5:
                items.append((sentences[i], sentences[i + 1]))
                i += 2
            else:
                items.append((sentences[i], None))
                i += 1
    return items


def hub_dataset(spec: CorpusSpec) -> tuple[str, str | None] | None:
    """The hub dataset (full id, config) a corpus is read from; None for the packaged or a local corpus."""
    if spec.source == LEE or Path(spec.source).suffix in LOCAL_BUILDERS:
        return None
    return ("nyu-mll/glue", "mrpc") if spec.source == MRPC else (spec.source, spec.config)


def _load_dataset(spec: CorpusSpec) -> tuple[datasets.Dataset, str | None]:
    """The dataset, and for a hub dataset the commit it was read at (its main branch, resolved
    once: online from the hub, offline from the local cache)."""
    import datasets  # imported when a corpus is loaded: the command line's parser needs only the spec

    path = Path(spec.source)
    hub = hub_dataset(spec)
    try:
        if spec.source == LEE:
            return datasets.load_dataset("text", data_files=str(lee_path()), split="train"), None
        if hub is None:
            if not path.is_file():
                raise CorpusError(f"corpus {_shown(spec.source)}: no such file")
            return datasets.load_dataset(LOCAL_BUILDERS[path.suffix], data_files=str(path), split="train"), None
        if not hub_reachable() and not offline_mode():  # fail at once instead of retrying for a minute
            raise CorpusError(f"corpus {_shown(spec.source)}: {why_unreachable()}; HF_HUB_OFFLINE=1 uses a cached copy")
        commit = resolved_commit(hub[0], "main", kind="dataset")
        return datasets.load_dataset(hub[0], hub[1], split=spec.split, revision=commit), commit
    except HubError as e:
        raise CorpusError(f"corpus {_shown(spec.source)}: {e}") from None
    except CorpusError:
        raise
    except Exception as e:  # datasets raises many types for unreachable or malformed sources
        cause = failure_cause(e, hub[0]) if hub else None
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CorpusError(f"corpus {_shown(spec.source)}: {cause or f'{type(e).__name__}: {first[:200]}'}") from e


def load_corpus(spec: CorpusSpec) -> Corpus:
    """Load, order (seeded shuffle) and cut the probe corpus to ``max_sequences`` items. Its id: the
    packaged corpus's name, a local file's name, or a hub dataset's full id (``mrpc``: its name)
    and the commit it was read at, then the split."""
    data, commit = _load_dataset(spec)
    text_col, pair_col = spec.text_column, spec.pair_column
    if spec.source == MRPC:
        text_col, pair_col = "sentence1", "sentence2"
    for col in (text_col, pair_col):
        if col is not None and col not in data.column_names:
            columns = ", ".join(data.column_names[:10]) + (", ..." if len(data.column_names) > 10 else "")
            raise CorpusError(f"corpus {_shown(spec.source)}: no column {_shown(col)} (columns: {columns[:200]})")
    texts = [t if isinstance(t, str) else None for t in data[text_col]]
    if spec.source == LEE:
        items = sentence_items([t for t in texts if t and t.strip()], spec.seed)
    else:
        pairs = [p if isinstance(p, str) and p.strip() else None for p in data[pair_col]] if pair_col else [None] * len(data)
        items = [(t, p) for t, p in zip(texts, pairs, strict=True) if t and t.strip()]
    if len(items) < 2:
        raise CorpusError(f"corpus {_shown(spec.source)}: {len(items)} usable sentence(s) in column {_shown(text_col)}; "
                          "at least two are needed")
    random.Random(spec.seed).shuffle(items)
    name = spec.source if spec.source in (LEE, MRPC) or commit else Path(spec.source).name
    name += f"@{commit[:12]}" if commit else ""
    return Corpus(corpus_id=f"{name}:{spec.split if spec.source != LEE else 'all'}", items=items[: spec.max_sequences])


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"
