"""Per-layer rows and headline numbers from a cell's aggregated rows (pandas only).

The command line's tables and the leaderboard's main table both take their numbers from here.
"""

from __future__ import annotations

import pandas as pd

from idsuite.suite.specs import SPECS, MetricSpec

ARROW_FREE_DIRECTIONS = {"higher": "higher better", "lower": "lower better", "none": ""}


def aggregate_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Finished rows aggregated over sequences and heads: one per (cell, variant, layer), and the
    whole-model rows (``layer`` null)."""
    return rows[(rows["status"] == "ok") & rows["head"].isna() & rows["sequence"].isna()]


def layer_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The per-layer rows of ``aggregate_rows``, ``layer`` as int."""
    rows = aggregate_rows(rows)
    return rows[rows["layer"].notna()].astype({"layer": int})


HEADLINE_COLUMNS = ["model_id", "metric", "variant", "value", "ci_low", "ci_high", "n", "n_unit", "seeds"]
"""A headline: its value and 95% interval (a control's: the range over its init seeds), its sample."""
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
    """One row per ``keys`` from rows of one or more init seeds (``init_seed``): the mean value; for
    several seeds the range over seeds as the interval (``n`` = seeds, ``n_unit`` = "seeds"), for
    one seed that row's own interval. Adds ``seeds`` (how many were combined)."""
    seed = rows["init_seed"] if "init_seed" in rows else pd.Series(pd.NA, index=rows.index)
    grouped = rows.assign(_seed=seed.fillna(-1)).groupby(keys, as_index=False, dropna=False, sort=False)
    out = grouped.agg(value=("value", "mean"), low=("value", "min"), high=("value", "max"), ci_low=("ci_low", "first"),
                      ci_high=("ci_high", "first"), n=("n", "first"), n_unit=("n_unit", "first"),
                      seeds=("_seed", "nunique"))
    several = out["seeds"] > 1
    out["ci_low"] = out["ci_low"].where(~several, out["low"])
    out["ci_high"] = out["ci_high"].where(~several, out["high"])
    out["n"] = out["n"].where(~several, out["seeds"])
    out["n_unit"] = out["n_unit"].where(~several, "seeds")
    return out.drop(columns=["low", "high"])


def headlines(rows: pd.DataFrame) -> pd.DataFrame:
    """Each model's one number per metric (``HEADLINE_COLUMNS``), from aggregated rows of any
    number of models: ``headline_values`` and, with ``headline_best_of``, the best variant by its
    direction. A model run under several init seeds (a control) gets the mean over seeds with the
    range over seeds as its interval (``combine_seeds``), and the best variant of that mean."""
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


def headline_label(spec: MetricSpec) -> str:
    """Column title of a headline: the name, where it is taken, its unit and which way is better
    (in words: arrows in a header read as sort indicators)."""
    variant = spec.headline_variant()
    where = ", last layer" if spec.headline_layer == "last" else ""
    best = ", best g" if spec.headline_best_of else ""
    qualifiers = ", ".join(q for q in (variant.unit, ARROW_FREE_DIRECTIONS[variant.direction]) if q)
    return f"{spec.display_name}{where}{best}" + (f" ({qualifiers})" if qualifiers else "")


def count_label(n: object) -> str:
    """A parameter count as 21.2k, 22.7M or 1.2B ('' when unknown)."""
    if n is None or pd.isna(n):
        return ""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if int(n) >= scale:
            return f"{int(n) / scale:.1f}{unit}"
    return str(int(n))


def with_interval(value: float, low: float, high: float) -> str:
    """``0.512±0.012`` (half the interval), or the value alone when it has none."""
    if pd.isna(value):
        return ""
    return f"{value:.3f}" if pd.isna(low) or pd.isna(high) else f"{value:.3f}±{(high - low) / 2:.3f}"


def run_tables(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One table per metric for the command line: layers down, (model, variant) across, the
    variants each metric declares for printing, each value with half its 95% interval (a control:
    the mean over its init seeds, with half their range)."""
    if rows.empty:
        return []
    per_layer = combine_seeds(layer_rows(rows), ["model_id", "metric", "variant", "layer"])
    tables = []
    for name, spec in SPECS.items():
        part = per_layer[(per_layer["metric"] == name) & per_layer["variant"].isin(spec.printed_variants())]
        if part.empty:
            continue
        part = part.assign(text=[with_interval(*v) for v in part[["value", "ci_low", "ci_high"]].itertuples(index=False)])
        table = part.pivot_table(index="layer", columns=["model_id", "variant"], values="text", aggfunc="first")
        order = [(m, v) for m in sorted(set(part["model_id"])) for v in spec.printed_variants() if (m, v) in table.columns]
        tables.append((f"{spec.display_name} ({name})", table[order].fillna("")))
    return tables


def run_notes(rows: pd.DataFrame) -> list[str]:
    """One line per model (and init seed) on how much data and which fits its numbers rest on: the
    sequences each metric counted (variants of kind ``count``, their labels) and how many iterative
    fits converged (``fit`` variants named ``...:converged``)."""
    if rows.empty:
        return []
    done = rows[rows["status"] == "ok"]
    lines = []
    for (model, seed), part in done.groupby(["model_id", "init_seed"], dropna=False, sort=True):
        label = model if pd.isna(seed) else f"{model} (init seed {int(seed)})"
        for name, spec in SPECS.items():
            counted = part[(part["metric"] == name) & part["variant"].isin(spec.variants_of("count"))]
            lines += [f"{label}: {name}: {text}" for text in counted["label"].dropna() if text]
            fits = part[(part["metric"] == name) & part["variant"].str.endswith(":converged")]
            if len(fits):
                lines.append(f"{label}: {name}: {int(fits['value'].sum())} of {len(fits)} iterative fits converged "
                             "(held-out loss stopped improving before the cap)")
    return lines
