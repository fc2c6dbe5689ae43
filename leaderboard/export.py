"""Paper export: the main table as LaTeX and the per-layer figures as PNG and PDF, from the same data."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from leaderboard import data  # noqa: E402


def per_layer_figure(results: pd.DataFrame, metric: str, variant: str, normalise_depth: bool = True):
    """Every model's curve of one metric variant; controls dashed. None if there are no rows."""
    table = data.model_table(results)
    curves = data.layer_curves(results, table["model"].tolist(), metric, variant, normalise_depth)
    if curves.empty:
        return None
    controls = set(table.loc[table["trained"] == "control", "model"])
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for model, part in curves.groupby("model", sort=True):
        ax.plot(part["depth"], part["value"], marker="o", markersize=3, label=model,
                linestyle="--" if model in controls else "-")
    spec = data.specs()[metric]
    ax.set_xlabel("layer / L" if normalise_depth else "layer")
    ax.set_ylabel(f"{spec.display_name}: {variant}")
    ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return fig


def export(results: pd.DataFrame, out: Path) -> list[Path]:
    """Write ``leaderboard.tex`` and ``<metric>__<variant>.png/.pdf`` into ``out``; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "leaderboard.tex"]
    written[0].write_text(data.latex_table(data.model_table(results)))
    for name, spec in data.specs().items():
        fig = per_layer_figure(results, name, spec.headline)
        if fig is None:
            continue
        for suffix in ("png", "pdf"):
            path = out / f"{name}__{spec.headline.replace('/', '-')}.{suffix}"
            fig.savefig(path, dpi=200)
            written.append(path)
        plt.close(fig)
    return written
