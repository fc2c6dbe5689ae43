"""The conventions every metric's rows keep, checked against its declaration (in the manner of
scikit-learn's ``check_estimator``): ``check_rows`` lists every way a metric's output departs from
what its ``MetricSpec`` declares. The conformance test runs it for every metric on every tiny
architecture of the test zoo; ``RowBuffer`` already refuses an undeclared variant as it is added.

Declared conventions, per variant (``idsuite.suite.specs.base.Variant``):

- ``layer`` kind: one aggregate row per layer 1..L (``head`` and ``sequence`` null) with its sample
  size ``n``, ``n_unit``, ``n_clusters`` and a 95% interval that holds the value, unless it declares
  ``aggregated=False``; per-head rows (one per layer and head) exactly when ``per_head``;
  per-sequence rows exactly when ``per_sequence``;
- ``map``: rows with ``layer``, ``query`` and ``key`` (and ``head`` for a head's map); ``label``: rows with ``key`` and a
  ``label``; ``offset``: ``<family>:<k>`` per-layer rows; ``fit`` and ``count``: per-layer or
  whole-model rows, a ``count`` with a ``label`` saying what it counts;
- every finite value inside the variant's ``value_range``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from idsuite.suite.specs.base import MetricSpec


def _problems_of_layer_variant(name: str, rows: pd.DataFrame, declared, n_layers: int, n_heads: int) -> list[str]:
    out = []
    aggregate = rows[rows["head"].isna() & rows["sequence"].isna() & rows["layer"].notna()]
    layers = sorted(int(layer) for layer in aggregate["layer"].unique())
    if layers and layers != list(range(1, n_layers + 1)) and layers != list(range(0, n_layers + 1)):
        out.append(f"{name}: aggregate rows for layers {layers}, expected 1..{n_layers}")
    if aggregate.empty == declared.aggregated:
        out.append(f"{name}: per-layer aggregate rows {'missing' if declared.aggregated else 'not declared'}")
    finite = aggregate[np.isfinite(aggregate["value"].astype(float))]
    for column in ("n", "n_unit", "n_clusters", "ci_low", "ci_high"):
        if finite[column].isna().any():
            out.append(f"{name}: an aggregate row without {column}")
    inside = (finite["ci_low"] <= finite["value"] + 1e-9) & (finite["value"] <= finite["ci_high"] + 1e-9)
    if not inside.all():
        out.append(f"{name}: {int((~inside).sum())} aggregate value(s) outside their own interval")
    per_head = rows[rows["head"].notna() & rows["sequence"].isna()]
    if declared.per_head and len(per_head) != n_layers * n_heads:
        out.append(f"{name}: {len(per_head)} per-head rows, expected {n_layers} x {n_heads}")
    if not declared.per_head and len(per_head):
        out.append(f"{name}: per-head rows, but the variant does not declare per_head")
    per_sequence = rows[rows["sequence"].notna()]
    if declared.per_sequence != (len(per_sequence) > 0):
        out.append(f"{name}: per-sequence rows {'missing' if declared.per_sequence else 'not declared'}")
    return out


def check_rows(spec: MetricSpec, rows: pd.DataFrame, n_layers: int, n_heads: int) -> list[str]:
    """Every departure of a metric's ``rows`` (its ``finish``) from its declaration ``spec``, for a
    model of ``n_layers`` layers and ``n_heads`` heads; empty when the rows conform."""
    out = []
    if set(rows["metric"]) != {spec.name}:
        out.append(f"metric column holds {sorted(set(rows['metric']))}, expected only {spec.name!r}")
    family = rows["variant"].map(lambda v: v if v in spec.variants else v.split(":", 1)[0])
    undeclared = sorted(set(rows["variant"][~family.isin(list(spec.variants))]))
    if undeclared:
        out.append(f"undeclared variants {undeclared}")
    for name, declared in spec.variants.items():
        mine = rows[family == name]
        low, high = declared.value_range
        values = mine["value"].astype(float)
        finite = values[np.isfinite(values)]
        if (low is not None and (finite < low - 1e-6).any()) or (high is not None and (finite > high + 1e-6).any()):
            out.append(f"{name}: values outside the declared range {declared.value_range}")
        if declared.kind == "layer":
            out += _problems_of_layer_variant(name, mine, declared, n_layers, n_heads)
        elif declared.kind == "map" and len(mine) and mine[["layer", "query", "key"]].isna().any().any():
            out.append(f"{name}: map rows without layer, query or key")
        elif declared.kind == "label" and len(mine) and (mine["key"].isna().any() or mine["label"].isna().any()):
            out.append(f"{name}: label rows without key or label")
        elif declared.kind == "count" and mine["label"].isna().any():
            out.append(f"{name}: count rows without a label saying what they count")
        elif declared.kind == "offset" and mine.empty:
            out.append(f"{name}: no '{name}:<k>' rows")
    return out
