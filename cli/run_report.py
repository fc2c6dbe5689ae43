"""What ``idsuite run`` prints after a run: per metric, layers down and (model, variant) across,
each value with half its 95% interval, and one line per model on the data and fits behind it. The
numbers come from ``idsuite.results.headlines``; this module only writes them as text."""

from __future__ import annotations

import pandas as pd

from idsuite.results.headlines import combine_seeds, layer_rows
from idsuite.results.labels import variant_label, with_interval
from idsuite.suite.specs import SPECS


def run_tables(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One table per metric for the command line: layers down, (model, variant) across, the
    variants each metric declares for printing, each value with half its 95% interval (a control:
    the mean over its init seeds, the interval spanning theirs)."""
    if rows.empty:
        return []
    layers = layer_rows(rows)
    per_layer = combine_seeds(layers, ["model_id", "metric", "variant", "layer"])
    tables = []
    for name, spec in SPECS.items():
        part = per_layer[(per_layer["metric"] == name) & per_layer["variant"].isin(spec.printed_variants())]
        if part.empty:
            continue
        part = part.assign(text=[with_interval(*v) for v in part[["value", "ci_low", "ci_high"]].itertuples(index=False)])
        table = part.pivot_table(index="layer", columns=["model_id", "variant"], values="text", aggfunc="first")
        order = [(m, v) for m in sorted(set(part["model_id"])) for v in spec.printed_variants() if (m, v) in table.columns]
        tables.append(("\n".join([f"{spec.display_name} ({name})", *_legend(layers, name, [v for _, v in order])]),
                       table[order].fillna("")))
    return tables


def _legend(layers: pd.DataFrame, metric: str, variants: list[str]) -> list[str]:
    """Lines under a table's title: each variant shown, in words with its direction, and the
    sentences each model's intervals rest on (the most any layer's interval resampled), from the
    per-layer rows ``layers`` (``layer_rows``)."""
    spec = SPECS.get(metric)
    lines = [f"  {v}: {variant_label(spec, v)}" for v in dict.fromkeys(variants)]
    shown = layers[(layers["metric"] == metric) & layers["variant"].isin(variants)]
    counts = []
    for model, part in shown.groupby("model_id", sort=True):
        seeds = part["init_seed"].nunique() if "init_seed" in part else 0
        clusters = part["n_clusters"].max() if "n_clusters" in part else float("nan")
        sentences = "no interval" if pd.isna(clusters) else f"{int(clusters)} sentences"
        counts.append(f"{model} {sentences}" + (f" x {seeds} init seeds" if seeds > 1 else ""))
    if counts:
        lines.append(f"  on: {'; '.join(counts)}")
    return lines


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
