"""(1) rank deficiency + effective attention + token identifiability vs a plain forward pass with
attentions on, over the same batches of MiniLM (64 Lee items), and of the SmolLM2 decoder (32 Lee
items; skipped where it is not installed); and how the projection scales in n."""

import time

import pytest
import torch

from benchmarks.conftest import ratio, record
from idsuite.suite.metrics import metric_class
from idsuite.suite.null_space import project_attention
from idsuite.suite.specs import SPECS

BATTERY = ("rank_deficiency", "effective_attention", "token_identifiability")
ratio("(1) battery per batch / plain forward", "battery_per_batch", "plain_forward", "<= 1.5x")
ratio("(1) battery incl. fitting g / plain forward", "battery_with_fitting", "plain_forward", "(fitting is per model)")
ratio("(1) decoder (SmolLM2): battery per batch / plain forward", "decoder_battery_per_batch", "decoder_plain_forward",
      "not set")


@torch.no_grad()
def _plain(tracer, batches):
    for ids in batches:
        tracer.model(**tracer._pad(ids), output_attentions=True, output_hidden_states=True)


def _battery(tracer, batches, finish, seconds: dict[str, float] | None = None):
    """One battery over ``batches`` as the runner runs it (each layer's maps consumed as the forward
    pass hands them over); with ``seconds``, the time of each stage is added there: the traced forward
    passes with the per-layer updates, the batch updates, each metric's finish and, within token
    identifiability's, its MLP fits."""
    clock = {} if seconds is None else seconds
    metrics = {m: metric_class(m)(SPECS.get(m).config_type(), 0) for m in BATTERY}
    layerwise = [m for m in metrics.values() if hasattr(m, "update_layer")]

    def on_layer(batch, layer):
        for metric in layerwise:
            metric.update_layer(batch, layer)

    for ids in batches:
        start = time.perf_counter()
        trace = tracer.trace(ids, on_layer)
        middle = time.perf_counter()
        for metric in metrics.values():
            metric.update(trace)
        stage = "traced forward passes with per-layer updates"
        clock[stage] = clock.get(stage, 0.0) + middle - start
        clock["batch updates"] = clock.get("batch updates", 0.0) + time.perf_counter() - middle
    if finish:
        fit = metrics["token_identifiability"]._fit_mlps

        def timed_fit(*args):  # the MLP maps' fixed cost, apart from the scoring in the same finish
            start = time.perf_counter()
            fit(*args)
            clock["token_identifiability fits"] = time.perf_counter() - start

        metrics["token_identifiability"]._fit_mlps = timed_fit
        for name, metric in metrics.items():
            start = time.perf_counter()
            metric.finish(tracer)
            clock[f"{name} finish"] = time.perf_counter() - start


MODELS = pytest.mark.parametrize("model, prefix", [("minilm", ""), ("smollm2", "decoder_")])
"""The encoder of goal (1) and a decoder (its rows past d_h need their own projections)."""


@MODELS
def test_plain_forward(benchmark, request, model, prefix):
    tracer, batches = request.getfixturevalue(model)
    benchmark.pedantic(_plain, args=(tracer, batches), rounds=3, warmup_rounds=1)
    record(benchmark, f"{prefix}plain_forward")


@MODELS
def test_battery_per_batch(benchmark, request, model, prefix):
    tracer, batches = request.getfixturevalue(model)
    benchmark.pedantic(_battery, args=(tracer, batches, False), rounds=3, warmup_rounds=1)
    record(benchmark, f"{prefix}battery_per_batch")


def test_battery_with_fitting(benchmark, minilm):
    tracer, batches = minilm
    benchmark.pedantic(_battery, args=(tracer, batches, True), rounds=1)
    record(benchmark, "battery_with_fitting")


@pytest.mark.parametrize("n", [32, 64, 128])
@pytest.mark.parametrize("kind", ["encoder", "causal"])
def test_projection_scaling_in_length(benchmark, kind, n):
    """Projection of 8 sequences x 12 heads (d_h 64, d 768): the cost as n grows, encoder vs causal rows."""
    g = torch.Generator().manual_seed(0)
    w_out = torch.randn(12, 64, 768, generator=g)
    values = torch.randn(8, 12, n, 64, generator=g)
    allowed = torch.ones(8, n, n, dtype=torch.bool)
    if kind == "causal":
        allowed = allowed.tril()
    attention = torch.softmax(torch.randn(8, 12, n, n, generator=g).masked_fill(~allowed.unsqueeze(1), -torch.inf), -1)
    benchmark.pedantic(project_attention, args=(attention, values, w_out, allowed, torch.float64, kind == "encoder"),
                       rounds=3, warmup_rounds=1)
