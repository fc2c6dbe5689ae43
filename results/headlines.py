"""Per-layer rows and headline numbers from a cell's aggregated rows (pandas only): the maths.

The command line's tables (``idsuite.cli.run_report``) and the leaderboard's main table both take
their numbers from here; the names readers see are in ``idsuite.results.labels``.
"""

from __future__ import annotations

import pandas as pd

from idsuite.suite.specs import SPECS


def aggregate_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Finished rows aggregated over sequences and heads: one per (cell, variant, layer), and the
    whole-model rows (``layer`` null)."""
    return rows[(rows["status"] == "ok") & rows["head"].isna() & rows["sequence"].isna()]


def layer_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The per-layer rows of ``aggregate_rows``, ``layer`` as int."""
    rows = aggregate_rows(rows)
    return rows[rows["layer"].notna()].astype({"layer": int})


HEADLINE_COLUMNS = ["model_id", "metric", "variant", "value", "ci_low", "ci_high", "n", "n_unit", "seeds"]
"""A headline: its value and 95% interval (a control's: spanning its init seeds' intervals), its sample."""
_ESTIMATE = ["value", "ci_low", "ci_high", "n", "n_unit"]


def headline_variants() -> set[tuple[str, str]]:
    """The (metric, variant) pairs a headline can come from: each metric's headline, or its
    ``headline_best_of`` candidates."""
    return {(name, v) for name, spec in SPECS.items() for v in (spec.headline_best_of or (spec.headline,))}


def headline_values(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Every headline candidate of every group ``by`` (e.g. model and init seed): for ``last`` the
    last layer's row, for ``mean`` the whole-model row (else the mean of the per-layer values),
    with their intervals; columns ``by + [metric, variant] + _ESTIMATE``."""
    keys = [*by, "metric", "variant"]
    rows = aggregate_rows(rows) if len(rows) else rows
    wanted = headline_variants()
    if len(rows):  # a vectorised first cut by variant, then the exact (metric, variant) pairs on what is left
        rows = rows[rows["variant"].isin({v for _, v in wanted})]
        rows = rows[[(m, v) in wanted for m, v in zip(rows["metric"], rows["variant"], strict=True)]]
    if rows.empty:
        return pd.DataFrame(columns=[*keys, *_ESTIMATE])
    last_layer = {name for name, spec in SPECS.items() if spec.headline_layer == "last"}
    per_layer = rows[rows["layer"].notna()].sort_values("layer")
    last = per_layer[per_layer["metric"].isin(last_layer)].drop_duplicates(keys, keep="last")
    overall = rows[rows["layer"].isna() & ~rows["metric"].isin(last_layer)].drop_duplicates(keys)
    mean_only = per_layer[~per_layer["metric"].isin(last_layer)]
    mean_only = mean_only.merge(overall[keys], on=keys, how="left", indicator=True)
    mean_only = mean_only[mean_only["_merge"] == "left_only"].groupby(keys, as_index=False, dropna=False)["value"].mean()
    return pd.concat([last[[*keys, *_ESTIMATE]], overall[[*keys, *_ESTIMATE]], mean_only], ignore_index=True)


def combine_seeds(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per ``keys`` from rows of one or more init seeds (``init_seed``): the mean value and
    an interval that accounts for both the seeds and the sentences: from the lowest of the seeds'
    ``ci_low`` (or values, where a seed has no interval) to the highest ``ci_high`` (or value). One
    seed keeps its own interval. ``n``, ``n_unit``: one seed's sample (the same sentences for every
    seed); ``seeds``: how many were combined."""
    seed = rows["init_seed"] if "init_seed" in rows else pd.Series(pd.NA, index=rows.index)
    rows = rows.assign(_seed=seed.fillna(-1), _low=rows["ci_low"].fillna(rows["value"]),
                       _high=rows["ci_high"].fillna(rows["value"]))
    grouped = rows.groupby(keys, as_index=False, dropna=False, sort=False)
    out = grouped.agg(value=("value", "mean"), low=("_low", "min"), high=("_high", "max"), ci_low=("ci_low", "first"),
                      ci_high=("ci_high", "first"), n=("n", "first"), n_unit=("n_unit", "first"),
                      seeds=("_seed", "nunique"))
    several = out["seeds"] > 1
    out["ci_low"] = out["ci_low"].where(~several, out["low"])
    out["ci_high"] = out["ci_high"].where(~several, out["high"])
    return out.drop(columns=["low", "high"])


def headlines(rows: pd.DataFrame) -> pd.DataFrame:
    """Each model's one number per metric (``HEADLINE_COLUMNS``), from aggregated rows of any
    number of models: ``headline_values`` and, with ``headline_best_of``, the best variant by its
    direction. A model run under several init seeds (a control) gets the mean over seeds with an
    interval spanning the seeds' intervals (``combine_seeds``), and the best variant of that mean."""
    by = ["model_id", "init_seed"] if "init_seed" in rows else ["model_id"]
    values = headline_values(rows, by)
    if values.empty:
        return pd.DataFrame(columns=HEADLINE_COLUMNS)
    merged = combine_seeds(values, ["model_id", "metric", "variant"])
    out = []
    for name, spec in SPECS.items():
        candidates = spec.headline_best_of or (spec.headline,)
        part = merged[(merged["metric"] == name) & merged["variant"].isin(candidates) & merged["value"].notna()]
        part = part.assign(order=part["variant"].map({v: i for i, v in enumerate(candidates)}))
        lower = spec.variants[candidates[0]].direction == "lower"
        out.append(part.sort_values(["value", "order"], ascending=[lower, True]).drop_duplicates(["model_id"]))
    return pd.concat(out, ignore_index=True)[HEADLINE_COLUMNS].sort_values(["model_id", "metric"], ignore_index=True)
