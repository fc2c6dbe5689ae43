"""Feasible attention against one forward pass (MiniLM): the LPs of one sampled sentence longer than
d_h (4 rows, every layer and head) against a plain forward pass of that sentence, and per LP."""

from __future__ import annotations

import pytest
import torch

from benchmarks.conftest import NOTES, ratio, record
from idsuite.suite.metrics.feasible_attention import FeasibleAttentionMetric
from idsuite.suite.specs.feasible_attention import FeasibleAttentionConfig

SENTENCE = ("The minister said on Tuesday that the talks, which broke down in March over the border question, "
            "would resume in Geneva next week with both delegations and a mediator from the United Nations.")
SEQUENCE = 1_000_000  # an id of its own (the metric seeds its row sample with it: a corpus index, non-negative)
ratio("feasible attention, one sentence's LPs / its forward pass", "feasible_sentence", "feasible_forward",
      "not set (the LPs run on the CPU)")


@pytest.fixture(scope="module")
def sentence(minilm):
    tracer, _ = minilm
    tracer.encodings[SEQUENCE] = dict(tracer.tokenizer(SENTENCE))
    n = len(tracer.encodings[SEQUENCE]["input_ids"])
    assert tracer.d_head < n <= 2.5 * tracer.d_head  # a sentence the sample solves, with freedom to measure
    return tracer, [SEQUENCE]


@torch.no_grad()
def test_feasible_forward(benchmark, sentence):
    tracer, ids = sentence
    benchmark.pedantic(lambda: tracer.model(**tracer._pad(ids)), rounds=5, warmup_rounds=1)
    record(benchmark, "feasible_forward")


def test_feasible_sentence(benchmark, sentence):
    tracer, ids = sentence
    metric = FeasibleAttentionMetric(FeasibleAttentionConfig(min_sequences=1, map_max_tokens=0), seed=0)
    metric.update(tracer.trace(ids))
    kept = metric.kept[ids[0]]
    solved = benchmark.pedantic(metric._sequence, args=(kept,), rounds=2)
    record(benchmark, "feasible_sentence")
    NOTES.append(f"feasible attention: {solved.lps} LPs for {solved.rows} rows x {solved.sums['top_width'].size} heads "
                 f"of {solved.n} tokens, {benchmark.stats.stats.median / max(solved.lps, 1) * 1e3:.2f} ms per LP")
