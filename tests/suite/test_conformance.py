"""Every metric keeps its declaration on every architecture (``idsuite.suite.metrics.checks``), in the
manner of scikit-learn's ``check_estimator``: the variants, kinds and per-layer / per-head /
per-sequence rows it declares, nothing else; and the checker and the row buffer catch departures."""

import numpy as np
import pytest

from idsuite.suite.metrics import metric_class
from idsuite.suite.metrics.base import RowBuffer, UndeclaredRow
from idsuite.suite.metrics.checks import check_rows
from idsuite.suite.specs import SPECS
from idsuite.suite.uncertainty import Estimate
from tests.conftest import SENTENCES, TINY_CONFIGS, save_tiny
from tests.runners.test_tracing import tracer_for

FAST = {
    "context_mixing": {"max_sequences": 2, "max_tokens": 8},
    "token_identifiability": {"mlp_max_epochs": 5, "max_train_tokens": 200},
    "hidden_token_attribution": {"min_sequences": 2, "max_sequences": 2, "max_tokens": 10},
    "effective_attention": {"map_max_tokens": 12},
}
ITEMS = [(s, None) for s in SENTENCES] + [(SENTENCES[4], SENTENCES[2]), (SENTENCES[0], SENTENCES[1])]


@pytest.fixture(scope="module", params=sorted(TINY_CONFIGS))
def traced(request, tmp_path_factory):
    """A tiny model of each architecture, with the probe items encoded (sequences on both sides of d_h = 8)."""
    tracer, _, _ = tracer_for(save_tiny(tmp_path_factory.mktemp(request.param) / request.param, request.param))
    return tracer, tracer.encode(ITEMS, max_tokens=60)


@pytest.mark.parametrize("name", list(SPECS))
def test_every_metric_produces_exactly_what_it_declares_on_every_architecture(traced, name):
    tracer, ids = traced
    spec = SPECS.get(name)
    metric = metric_class(name)(spec.config_type(**FAST.get(name, {})), seed=0)
    for batch in (ids[:5], ids[5:]):  # two batches, streamed as the runner streams them
        metric.update(tracer.trace(batch, getattr(metric, "update_layer", None)))
    rows = metric.finish(tracer)
    assert check_rows(spec, rows, len(tracer.blocks), tracer.n_heads) == []
    present = {v if v in spec.variants else v.split(":", 1)[0] for v in rows["variant"]}
    assert {v for v, d in spec.variants.items() if d.kind == "layer"} <= present  # every per-layer quantity is there


def test_the_checker_names_each_departure():
    spec = SPECS.get("effective_attention")
    rows = RowBuffer(spec)
    for variant, d in spec.variants.items():
        if d.kind == "layer":
            rows.add_estimate(variant, Estimate(np.full(2, 0.5), np.full(2, 0.4), np.full(2, 0.6), np.full(2, 10), "rows", 4),
                              layer=[1, 2])
            if d.per_head:
                rows.add(variant, np.full(4, 0.5), layer=[1, 1, 2, 2], head=[0, 1, 0, 1])
            if d.per_sequence:
                rows.add(variant, np.full(2, 0.5), layer=[1, 2], sequence=0, n=5, n_unit="rows")
    good = rows.frame()
    assert check_rows(spec, good, n_layers=2, n_heads=2) == []
    one_layer = good[~((good["variant"] == "null_share") & (good["layer"] == 2) & good["head"].isna() & good["sequence"].isna())]
    assert check_rows(spec, one_layer, 2, 2) == ["null_share: aggregate rows for layers [1], expected 1..2"]
    wide = good.assign(value=good["value"].where(good["variant"] != "null_share", 1.5))
    assert "null_share: values outside the declared range (0, 1)" in check_rows(spec, wide, 2, 2)
    no_interval = good.assign(ci_low=np.nan)
    assert any("without ci_low" in p for p in check_rows(spec, no_interval, 2, 2))
    foreign = good.assign(variant=good["variant"].replace("pearson", "spearman"))
    assert "undeclared variants ['spearman']" in check_rows(spec, foreign, 2, 2)
    assert any("per-head rows" in p for p in check_rows(spec, good, 2, 3))


def test_the_row_buffer_refuses_what_the_spec_does_not_declare():
    rows = RowBuffer(SPECS.get("rank_deficiency"))
    with pytest.raises(UndeclaredRow, match="declares no variant 'nul_dim'"):
        rows.add("nul_dim", 1.0, layer=1)
    rows.add("null_fraction", 0.5, layer=1, head=0)  # declared per_head
    spec = SPECS.get("effective_attention")
    whole = next(v for v, d in spec.variants.items() if d.kind == "layer" and not d.per_sequence)
    with pytest.raises(UndeclaredRow, match="per_sequence"):
        RowBuffer(spec).add(whole, 0.5, layer=1, sequence=0)
