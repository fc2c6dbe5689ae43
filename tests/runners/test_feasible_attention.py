"""Feasible attention on every tiny architecture of the test zoo: causal rows use only j <= i, a
sliding layer its window, and the stored intervals are those of the head's own T_h."""

import numpy as np
import pytest

from idsuite.suite.feasible_attention import feasible_row
from idsuite.suite.metrics.feasible_attention import FeasibleAttentionMetric
from idsuite.suite.null_space import value_output_matrix
from idsuite.suite.specs.feasible_attention import FeasibleAttentionConfig
from tests.conftest import SENTENCES, TINY_CONFIGS, save_tiny
from tests.runners.test_tracing import encode, tracer_for

TEXTS = [(SENTENCES[0], None), (SENTENCES[4], None), (SENTENCES[1], SENTENCES[3]), (SENTENCES[5], None)]
"""9, 24, 20 and 6 tokens or so: both sides of d_h = 8 under the cap of 2.5 d_h = 20 (24 is left out)."""


@pytest.fixture(scope="module", params=sorted(TINY_CONFIGS))
def tiny_tracer(request, tmp_path_factory):
    folder = save_tiny(tmp_path_factory.mktemp(request.param), request.param)
    return tracer_for(folder)


def test_every_architecture_gives_intervals_of_its_own_heads(tiny_tracer):
    tracer, _, tokenizer = tiny_tracer
    ids = encode(tracer, tokenizer, TEXTS)
    config = FeasibleAttentionConfig(min_sequences=4, rows_per_sequence=3, example_rows=3)
    metric = FeasibleAttentionMetric(config, seed=0)
    streamed = tracer.trace(ids, metric.update_layer)
    metric.update(streamed)
    rows = metric.finish(tracer)
    kept = tracer.trace(ids)  # the same pass, its layers kept, for an independent recomputation
    n_layers, n_heads = len(kept.layers), kept.layers[0].attention.shape[1]

    per_layer = rows[(rows.variant == "top_width") & rows["head"].isna() & rows.sequence.isna() & rows.layer.notna()]
    assert sorted(per_layer.layer) == list(range(1, n_layers + 1))
    assert ((per_layer.ci_low <= per_layer.value + 1e-12) & (per_layer.value <= per_layer.ci_high + 1e-12)).all()
    share = rows[(rows.variant == "top_identifiable") & rows.layer.isna()].value.item()
    assert 0 <= share <= 1
    sampled = rows[rows.variant == "sampled_sequences"]
    lengths = dict(zip(kept.sequence_ids.tolist(), kept.lengths.tolist(), strict=True))
    assert sampled.value.item() == sum(n <= 20 for n in lengths.values())

    maps = rows[rows.variant.isin(["map_weight", "map_low", "map_high"])]
    assert len(maps)
    seq = int(maps.sequence.iloc[0])
    b = kept.sequence_ids.tolist().index(seq)
    n = lengths[seq]
    assert n > kept.d_head  # the shortest sampled sequence longer than d_h
    for layer in range(1, n_layers + 1):
        trace = kept.layers[layer - 1]
        allowed = kept.allowed(layer - 1)[b]
        t = value_output_matrix(trace.values.double(), trace.w_out.double())[b]  # T_h itself, not V_h F_h
        for head in range(n_heads):
            cell = maps[(maps.layer == layer) & (maps["head"] == head)]
            for query in range(n - 3, n):
                keys = np.flatnonzero(allowed[query].numpy())
                if kept.causal:
                    assert keys.max() <= query
                if trace.window is not None:
                    assert (query - keys < trace.window).all()
                got = cell[cell["query"] == query].pivot_table(index="key", columns="variant", values="value")
                assert got.index.tolist() == keys.tolist()  # every allowed key, no other
                a = trace.attention[b, head, query, keys].double().numpy()
                ref = feasible_row(a, t[head][keys].numpy(), top_keys=len(keys))
                order = np.argsort(ref.keys)
                np.testing.assert_allclose(got["map_low"], ref.low[order], atol=1e-7)
                np.testing.assert_allclose(got["map_high"], ref.high[order], atol=1e-7)
                np.testing.assert_allclose(got["map_weight"], a, atol=1e-12)
                assert (got["map_low"] <= got["map_weight"] + 1e-9).all() and (got["map_weight"] <= got["map_high"] + 1e-9).all()


def test_short_sequences_leave_no_freedom(tiny_bert_dir):
    # every sampled sequence has n <= d_h + 1 keys: [V_h F_h, 1] has full row rank, so F_i = {a_i}
    tracer, _, tokenizer = tracer_for(tiny_bert_dir)
    ids = encode(tracer, tokenizer, [(SENTENCES[3], None), (SENTENCES[5], None)])
    metric = FeasibleAttentionMetric(FeasibleAttentionConfig(min_sequences=2), seed=0)
    metric.update(tracer.trace(ids))
    rows = metric.finish(tracer)
    agg = rows[rows.sequence.isna() & rows.variant.isin(["top_width", "dimension", "top_identifiable"])]
    assert (agg[agg.variant != "top_identifiable"].value == 0).all()
    assert (agg[agg.variant == "top_identifiable"].value == 1).all()
    sampled = rows[rows.variant == "sampled_sequences"]
    assert sampled.value.item() == 2 and "so the sample does not straddle the head size" in sampled.label.item()
