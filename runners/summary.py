"""Short per-metric, per-layer tables of a run's results (printed at the end of ``idsuite run``)."""

from __future__ import annotations

import pandas as pd

from suite.metrics import METRICS

SUMMARY_VARIANTS = {
    "rank_deficiency": ["nonidentifiable_share", "null_fraction"],
    "effective_attention": ["null_share", "pearson", "argmax_change", "mass_sep_raw", "mass_sep_eff"],
    "token_identifiability": ["naive/cosine", "linear/cosine", "mlp/cosine", "naive/l2", "linear/l2", "mlp/l2"],
    "hidden_token_attribution": ["own", "own_is_top", "entropy"],
}


def layer_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Rows aggregated over sequences and heads (one value per model, metric, variant and layer)."""
    ok = results[(results["status"] == "ok") & results["head"].isna() & results["sequence"].isna()]
    return ok[ok["layer"].notna()]


def summary_tables(results: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One table per metric: layers down, (model, variant) across."""
    if results.empty or "status" not in results:
        return []
    rows = layer_rows(results)
    tables = []
    for name, cls in METRICS.items():
        part = rows[(rows["metric"] == name) & rows["variant"].isin(SUMMARY_VARIANTS.get(name, [cls.spec.headline]))]
        if part.empty:
            continue
        table = part.pivot_table(index="layer", columns=["model_id", "variant"], values="value", aggfunc="first")
        tables.append((f"{cls.spec.display_name} ({name})", table.round(3)))
    return tables
