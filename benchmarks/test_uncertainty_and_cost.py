"""Issue 12's numbers: the whole battery (attribution excluded, the MLP maps trained to convergence)
against the forward passes over the default corpus; attribution's cost per attributed token, exact
and estimate, on MiniLM and SmolLM2; and whether the estimator's probe-error intervals cover the
exact per-layer means, over 5 probe seeds."""

from __future__ import annotations

import time

import numpy as np
import torch

from benchmarks.conftest import DEFAULT_ITEMS, NOTES, TIMES, ratio, record
from benchmarks.test_battery_vs_forward import BATTERY, _battery, _plain
from idsuite.suite.metrics.hidden_token_attribution import AttributionMetric
from idsuite.suite.specs.hidden_token_attribution import AttributionConfig
from idsuite.suite.uncertainty import jackknife_half_width

ratio("(12) battery over the default corpus (MLPs converged, attribution excluded) / forward passes",
      "default_corpus_battery", "default_corpus_forward", "about 3x accepted on 2 cores (issue 25)")
ratio("(12) marginal: the battery over every Lee item (9.3x the default corpus) / its forward passes",
      "tenfold_corpus_battery", "tenfold_corpus_forward", "<= 2x (issue 25)")
ratio("(12) fixed: token identifiability's MLP fits / the default corpus's forward passes",
      "identifiability_fits", "default_corpus_forward", "reported on its own (issue 25)")
SEEDS = range(5)
PROBES = 8
COVERAGE: list[bool] = []


def test_default_corpus_forward(benchmark, minilm_default_corpus):
    tracer, batches = minilm_default_corpus
    benchmark.pedantic(_plain, args=(tracer, batches), rounds=3, warmup_rounds=1)
    record(benchmark, "default_corpus_forward")


def _stages(name: str, stages: dict[str, float]) -> str:
    return f"(12) {name}'s stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items())


def test_default_corpus_battery(benchmark, minilm_default_corpus):
    tracer, batches = minilm_default_corpus
    stages: dict[str, float] = {}
    benchmark.pedantic(_battery, args=(tracer, batches, True, stages), rounds=1)  # one round: its stages
    record(benchmark, "default_corpus_battery")
    NOTES.append(f"(12) battery = {', '.join(BATTERY)}, each finished (identifiability's 14 MLP maps trained until "
                 "their held-out loss stopped improving)")
    NOTES.append(_stages("the default corpus", stages))
    TIMES["identifiability_fits"] = stages["token_identifiability fits"]


def test_tenfold_corpus_forward(benchmark, minilm_tenfold_corpus):
    tracer, batches = minilm_tenfold_corpus
    benchmark.pedantic(_plain, args=(tracer, batches), rounds=1, warmup_rounds=1)
    record(benchmark, "tenfold_corpus_forward")


def test_tenfold_corpus_battery(benchmark, minilm_tenfold_corpus):
    """The marginal cost: on ten times the default corpus the fits' fixed cost is spread over ten
    times the forward passes."""
    tracer, batches = minilm_tenfold_corpus
    stages: dict[str, float] = {}
    benchmark.pedantic(_battery, args=(tracer, batches, True, stages), rounds=1)
    record(benchmark, "tenfold_corpus_battery")
    NOTES.append(f"(12) the tenfold corpus: {sum(map(len, batches))} Lee items in {len(batches)} batches")
    NOTES.append(_stages("the tenfold corpus", stages))
    names = ("tenfold_corpus_battery", "default_corpus_battery", "tenfold_corpus_forward", "default_corpus_forward")
    if all(n in TIMES for n in names):
        added, forward = TIMES[names[0]] - TIMES[names[1]], TIMES[names[2]] - TIMES[names[3]]
        items = sum(map(len, batches)) - DEFAULT_ITEMS
        NOTES.append(f"(12) the difference quotient (what the {items} added items cost, fixed costs cancelled): "
                     f"{added:.2f} s / {forward:.2f} s of forward passes = {added / forward:.2f}x")


def _sentences(tracer, lengths: tuple[int, int], count: int) -> list[tuple[int, int]]:
    """``count`` probe sequences (id, n) with ``lengths[0] <= n <= lengths[1]``, alternating shorter
    and longer halves of that range (straddling the head size when it lies inside)."""
    pool = sorted((s, len(e["input_ids"])) for s, e in tracer.encodings.items() if lengths[0] <= len(e["input_ids"]) <= lengths[1])
    middle = (lengths[0] + lengths[1]) / 2
    low, high = [p for p in pool if p[1] <= middle], [p for p in pool if p[1] > middle]
    return [p for pair in zip(high, low, strict=False) for p in pair][:count]


def _coverage(name: str, tracer, sentences: list[tuple[int, int]]) -> None:
    """Exact per-layer mean own contribution over the sentences, and for each probe seed the
    estimator's mean with its probe-error interval (jackknife over probes): how often it covers."""
    start = time.perf_counter()
    exact = AttributionMetric(AttributionConfig(method="exact"), 0)
    exact_runs = [exact._attribute(tracer, s, n) for s, n in sentences]
    exact_seconds = time.perf_counter() - start
    tokens = sum(n for _, n in sentences)
    truth = sum(a.sums["own"] for a in exact_runs) / tokens
    covered, widths, start = [], [], time.perf_counter()
    for seed in SEEDS:
        runs = [AttributionMetric(AttributionConfig(probes=PROBES), seed)._attribute(tracer, s, n) for s, n in sentences]
        mean = sum(a.sums["own"] for a in runs) / tokens  # the metric's (jackknife bias-corrected) means
        half = jackknife_half_width(sum(a.leave_one_out["own"] for a in runs) / tokens)
        covered += list(np.abs(mean - truth) <= half)
        widths.append(half.mean())
    estimate_seconds = (time.perf_counter() - start) / len(SEEDS)
    COVERAGE.extend(covered)
    NOTES.append(f"(12) {name}: {len(sentences)} sentences ({tokens} tokens): exact {1000 * exact_seconds / tokens:.0f} ms "
                 f"per attributed token, estimate (k = {PROBES}) {1000 * estimate_seconds / tokens:.0f} ms "
                 f"({exact_seconds / estimate_seconds:.1f}x cheaper; goal >= 10x at d = 384); probe-error intervals "
                 f"(mean half-width {np.mean(widths):.4f}) cover the exact per-layer means in {np.mean(covered):.0%} of "
                 f"{len(covered)} (layer, seed) cases")
    NOTES.append(f"(12) coverage so far over the benchmark's models: {np.mean(COVERAGE):.1%} of {len(COVERAGE)} (goal >= 93%)")


def test_estimator_coverage_and_cost_minilm(benchmark, minilm):
    tracer, _ = minilm
    benchmark.pedantic(_coverage, args=("MiniLM", tracer, _sentences(tracer, (16, 48), 4)), rounds=1)


def test_estimator_coverage_and_cost_smollm2(benchmark, smollm2):
    tracer, _ = smollm2
    torch.set_num_threads(torch.get_num_threads())
    benchmark.pedantic(_coverage, args=("SmolLM2", tracer, _sentences(tracer, (6, 14), 2)), rounds=1)
