"""Per-layer rows and headline numbers from a cell's aggregated rows (pandas only).

The command line's tables and the leaderboard's main table both take their numbers from here.
"""

from __future__ import annotations

import pandas as pd

from suite.specs import SPECS, MetricSpec

ARROW_FREE_DIRECTIONS = {"higher": "higher better", "lower": "lower better", "none": ""}


def aggregate_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Finished rows aggregated over sequences and heads: one per (cell, variant, layer), and the
    whole-model rows (``layer`` null)."""
    return rows[(rows["status"] == "ok") & rows["head"].isna() & rows["sequence"].isna()]


def layer_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The per-layer rows of ``aggregate_rows``, ``layer`` as int."""
    rows = aggregate_rows(rows)
    return rows[rows["layer"].notna()].astype({"layer": int})


HEADLINE_COLUMNS = ["model_id", "metric", "value", "variant"]


def headlines(rows: pd.DataFrame) -> pd.DataFrame:
    """Each model's one number per metric (``HEADLINE_COLUMNS``), from aggregated rows of any number
    of models: the ``last`` layer's value, or for ``mean`` the whole-model row (else the mean of the
    per-layer rows); with ``headline_best_of``, the best of those variants by their direction."""
    keys = ["model_id", "metric", "variant"]
    rows = aggregate_rows(rows) if len(rows) else rows
    if rows.empty:
        return pd.DataFrame(columns=HEADLINE_COLUMNS)
    per_layer = rows[rows["layer"].notna()].sort_values("layer")
    last = per_layer.groupby(keys, sort=False)["value"].last()
    mean = rows[rows["layer"].isna()].groupby(keys, sort=False)["value"].first()
    mean = mean.combine_first(per_layer.groupby(keys, sort=False)["value"].mean())
    out = []
    for name, spec in SPECS.items():
        source = last if spec.headline_layer == "last" else mean
        values = source[source.index.get_level_values("metric") == name].dropna().reset_index()
        candidates = spec.headline_best_of or (spec.headline,)
        values = values[values["variant"].isin(candidates)]
        values = values.assign(order=values["variant"].map({v: i for i, v in enumerate(candidates)}))
        lower = spec.variants[candidates[0]].direction == "lower"
        best = values.sort_values(["value", "order"], ascending=[lower, True]).drop_duplicates(["model_id"])
        out.append(best[HEADLINE_COLUMNS])
    return pd.concat(out, ignore_index=True).sort_values(["model_id", "metric"], ignore_index=True)


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


def run_tables(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One table per metric for the command line: layers down, (model, variant) across, the
    variants each metric declares for printing."""
    per_layer = layer_rows(rows) if len(rows) else rows
    tables = []
    for name, spec in SPECS.items():
        part = per_layer[(per_layer["metric"] == name) & per_layer["variant"].isin(spec.printed_variants())] if len(rows) else []
        if len(part) == 0:
            continue
        table = part.pivot_table(index="layer", columns=["model_id", "variant"], values="value", aggfunc="first")
        order = [(m, v) for m in sorted(set(part["model_id"])) for v in spec.printed_variants() if (m, v) in table.columns]
        tables.append((f"{spec.display_name} ({name})", table[order].round(3)))
    return tables
