"""Paired comparisons: the difference of two models on the same probe sentences, per layer, with a
paired bootstrap interval (``idsuite.suite.uncertainty.paired_difference``).

Each side is one or more cells of a metric (a control's init seeds are pooled: their per-sentence
sums and counts add up). Per-sequence rows give, for every sentence and layer, a value averaged
over ``n`` units (heads, tokens); a sentence's sum is ``value * n`` (``n`` missing: one unit).
Only sentences both sides measured are compared.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from idsuite.results.query import ResultQuery
from idsuite.results.store import CellRef
from idsuite.suite.specs import SPECS
from idsuite.suite.uncertainty import paired_difference, rank_intervals

PAIRED_COLUMNS = ["layer", "difference", "ci_low", "ci_high", "excludes_zero", "sequences"]
"""One row per layer, then the headline's row (``layer`` null: the mean over layers or the last
layer, as the metric's headline is taken)."""


def _per_sentence(query: ResultQuery, cells: Sequence[CellRef], variant: str) -> pd.DataFrame:
    """(sequence, layer) -> sum and count of a variant's per-sequence rows over the given cells."""
    rows = query.cell_rows(cells, where="variant = ? AND sequence IS NOT NULL AND layer IS NOT NULL",
                           columns=["layer", "sequence", "value", "n"], parameters=[variant])
    units = rows["n"].astype("Float64").fillna(1.0).astype(float)
    present = rows["value"].notna()
    rows = rows.assign(sum=np.where(present, rows["value"].fillna(0.0) * units, 0.0), count=np.where(present, units, 0.0))
    return rows.groupby(["sequence", "layer"])[["sum", "count"]].sum()


def paired(query: ResultQuery, a: Sequence[CellRef], b: Sequence[CellRef], variant: str, seed: int = 0) -> pd.DataFrame:
    """Model a minus model b on a metric variant with per-sequence rows, per layer and for the
    headline (``PAIRED_COLUMNS``); empty when they share no sentence or their layers differ."""
    metric = a[0].metric
    spec = SPECS.get(metric)
    if not spec.variant(variant).per_sequence:
        raise ValueError(f"{metric}/{variant} has no per-sequence rows to pair")
    left, right = _per_sentence(query, a, variant), _per_sentence(query, b, variant)
    if left.empty or right.empty:
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    layers = sorted(set(left.index.get_level_values("layer")))
    if layers != sorted(set(right.index.get_level_values("layer"))):
        return pd.DataFrame(columns=PAIRED_COLUMNS)  # different depths: layer l of one is not layer l of the other
    shared = sorted(set(left.index.get_level_values("sequence")) & set(right.index.get_level_values("sequence")))
    if not shared:
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    grid = pd.MultiIndex.from_product([shared, layers], names=["sequence", "layer"])
    arrays = [side.reindex(grid, fill_value=0.0)[column].to_numpy().reshape(len(shared), len(layers))
              for side in (left, right) for column in ("sum", "count")]
    per_layer = paired_difference(*arrays, seed=seed)
    if spec.headline_layer == "last":
        last = [x[:, -1:] for x in arrays]
        headline = paired_difference(*last, seed=seed)
        head = (float(headline.value[0]), float(headline.low[0]), float(headline.high[0]))
    else:
        headline = paired_difference(*arrays, seed=seed, average_axis=0)
        head = (float(headline.value), float(headline.low), float(headline.high))
    out = pd.DataFrame({"layer": pd.array(layers, dtype="Int64"), "difference": per_layer.value,
                        "ci_low": per_layer.low, "ci_high": per_layer.high})
    out.loc[len(out)] = [pd.NA, *head]
    out["excludes_zero"] = (out["ci_low"] > 0) | (out["ci_high"] < 0)
    out["sequences"] = len(shared)
    return out[PAIRED_COLUMNS]


RANK_COLUMNS = ["model", "rank", "rank_low", "rank_high", "sentences"]
"""A model's rank on a metric's headline (1 = best) and its 95% interval over bootstrap replicates;
``sentences``: how many sentences its number rests on."""


def ranked(query: ResultQuery, sides: dict[str, tuple[Sequence[CellRef], str]], seed: int = 0) -> pd.DataFrame:
    """Rank the models of ``sides`` (model -> its cells of one metric and its headline variant) on
    that metric's headline, with rank intervals from a bootstrap that redraws the sentences once for
    all models (``idsuite.suite.uncertainty.rank_intervals``); ``RANK_COLUMNS``, best first. A
    sentence a model was not measured on counts nothing for it; models of different depths are
    compared at their own last layer, or by their own mean over layers (missing layers left out)."""
    if not sides:
        return pd.DataFrame(columns=RANK_COLUMNS)
    metric = next(iter(sides.values()))[0][0].metric
    spec = SPECS.get(metric)
    parts = {model: _per_sentence(query, cells, variant) for model, (cells, variant) in sides.items()}
    parts = {model: part for model, part in parts.items() if len(part)}
    if not parts:
        return pd.DataFrame(columns=RANK_COLUMNS)
    models = list(parts)
    sentences = sorted(set().union(*(p.index.get_level_values("sequence") for p in parts.values())))
    depth = max(int(p.index.get_level_values("layer").max()) for p in parts.values())
    shape = (len(sentences), len(models), 1 if spec.headline_layer == "last" else depth)
    sums, counts = np.zeros(shape), np.zeros(shape)
    row = {s: i for i, s in enumerate(sentences)}
    for j, model in enumerate(models):
        part = parts[model].reset_index()
        if spec.headline_layer == "last":
            part = part[part["layer"] == part["layer"].max()].assign(layer=1)
        rows, layers = part["sequence"].map(row).to_numpy(), part["layer"].astype(int).to_numpy() - 1
        sums[rows, j, layers], counts[rows, j, layers] = part["sum"].to_numpy(), part["count"].to_numpy()
    higher = spec.headline_variant().direction != "lower"
    estimate = rank_intervals(sums, counts, higher, seed=seed, average_axis=-1)
    measured = [int(parts[m].index.get_level_values("sequence").nunique()) for m in models]
    out = pd.DataFrame({"model": models, "rank": estimate.rank, "rank_low": estimate.low, "rank_high": estimate.high,
                        "sentences": measured})
    return out.sort_values(["rank", "model"], ignore_index=True)
