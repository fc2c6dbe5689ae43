"""The context-mixing probe on every tiny architecture of the test zoo: the metric runs, its matrices
are row-stochastic (causal ones lower-triangular), the decomposition adds up to the attention block's
real output, and value zeroing by subtracting ``u_ij`` equals zeroing token j's values in the model."""

import pytest
import torch

from idsuite.runners.probing.tracing import Tracer
from idsuite.suite.context_mixing import decomposed, head_mixed, local_matrices
from idsuite.suite.metrics.context_mixing import ContextMixingMetric
from idsuite.suite.specs.context_mixing import MEASURES, SPEC, ContextMixingConfig
from tests.conftest import SENTENCES, TINY_CONFIGS, save_tiny
from tests.runners.test_tracing import encode, tracer_for


@pytest.fixture(scope="module", params=sorted(TINY_CONFIGS))
def tiny(request, tmp_path_factory) -> tuple[Tracer, list[int]]:
    tracer, _, tokenizer = tracer_for(save_tiny(tmp_path_factory.mktemp("mix") / request.param, request.param))
    return tracer, encode(tracer, tokenizer, [(s, None) for s in SENTENCES[:4]])


def test_every_measure_runs_and_gives_row_stochastic_matrices(tiny):
    tracer, ids = tiny
    metric = ContextMixingMetric(ContextMixingConfig(max_sequences=2, max_tokens=14), seed=0)
    metric.update(tracer.trace(ids))
    rows = metric.finish(tracer)
    aggregates = rows[rows["sequence"].isna() & rows["layer"].notna()]
    expected = {v for v, spec in SPEC.variants.items() if spec.kind == "layer"}
    counts = rows[rows["layer"].isna()].set_index("variant")["value"]
    assert counts.to_dict() == {"scored_sequences": 2, "skipped_sequences": 0}
    assert set(aggregates["variant"]) == expected and aggregates["value"].notna().all()
    assert (aggregates["ci_low"] <= aggregates["value"] + 1e-12).all() and (aggregates["n_unit"] == "tokens").all()
    for measure in MEASURES:
        maps = rows[rows["variant"] == f"matrix:{measure}"]
        grid = maps.groupby(["layer", "query"])["value"].sum()
        assert ((grid - 1).abs() < 1e-6).all(), measure  # rolled-out rows sum to one
        if tracer.causal:
            assert (maps.loc[maps["key"] > maps["query"], "value"].abs() < 1e-12).all(), measure


def test_the_decomposition_adds_up_to_the_attention_blocks_output(tiny):
    tracer, ids = tiny
    for layer in tracer.mixing_layers(ids[1]):
        t = decomposed(layer, head_mixed(layer.attention.double(), layer.transformed.double()))
        rest = layer.output.double() - t.sum(1)  # the biases' share: b_O (and the norm's beta), the same for all j
        block = tracer.blocks[0]
        bias = block.get_submodule(tracer.adapter.output).bias
        if layer.form == "pre":
            expected = torch.zeros_like(rest) if bias is None else bias.double().expand_as(rest)
        elif layer.form == "sandwich":
            expected = torch.zeros_like(rest)
        else:  # post: gain * C(b_O) * scale_i + beta
            norm = block.get_submodule(tracer.adapter.attention_norm)
            centred = bias.double() - bias.double().mean()
            expected = norm.weight.double() * centred * layer.scale.double().view(-1, 1) + norm.bias.double()
        torch.testing.assert_close(rest, expected, atol=2e-5, rtol=1e-4)


def test_value_zeroing_by_subtraction_equals_zeroing_the_values_in_the_model(tiny):
    tracer, ids = tiny
    layers = tracer.mixing_layers(ids[0])
    index, j = len(layers) - 1, 2
    layer = layers[index]
    u = head_mixed(layer.attention, layer.transformed)
    fast = layer.rerun(u[:, j].unsqueeze(0))[0]
    value = tracer.blocks[index].get_submodule(tracer.adapter.value)

    def zero_row(module, inputs, output):  # token j's value vector in every head, the projection's bias included
        out = output.clone()
        v = tracer.adapter.values(out, tracer.d_head)  # a view into ``out`` for every layout
        v[:, :, j] = 0
        return out

    handle = value.register_forward_hook(zero_row)
    try:
        slow = layer.block(layer.residual)  # the whole layer again, its values computed (and zeroed) anew
    finally:
        handle.remove()
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-4)
    assert local_matrices(layer, tracer.causal)["value_zeroing"].shape == (len(layer.target),) * 2
