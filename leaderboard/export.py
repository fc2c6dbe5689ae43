"""Paper export: the main table as LaTeX and the per-layer figures as PNG and PDF, from the same data."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from leaderboard.data import Board, latex_table  # noqa: E402
from suite.specs import SPECS  # noqa: E402


def per_layer_figure(board: Board, metric: str, variant: str, normalise_depth: bool = True):
    """Every model's curve of one metric variant; controls dashed. None if there are no rows."""
    table = board.model_table()
    curves = board.layer_curves(table["model"].tolist(), metric, variant, normalise_depth)
    if curves.empty:
        return None
    controls = set(table.loc[table["trained"] == "control", "model"])
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for model, part in curves.groupby("model", sort=True):
        ax.plot(part["depth"], part["value"], marker="o", markersize=3, label=model,
                linestyle="--" if model in controls else "-")
    spec = SPECS.get(metric)
    ax.set_xlabel("layer / L" if normalise_depth else "layer")
    if not normalise_depth:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{variant} ({spec.variants[variant].unit})" if spec.variants[variant].unit else variant)
    ax.set_title(f"{spec.display_name}: {variant}", fontsize=9)
    ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return fig


def export(board: Board, out: Path) -> list[Path]:
    """Write ``leaderboard.tex`` and ``<metric>__<variant>.png/.pdf`` into ``out``; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "leaderboard.tex"]
    models = board.cells["model_id"].nunique()
    caption = f"Identifiability headlines of {models} model{'s' if models != 1 else ''}."
    written[0].write_text(latex_table(board.model_table(), caption))
    for name, spec in SPECS.items():
        fig = per_layer_figure(board, name, spec.headline)
        if fig is None:
            continue
        for suffix in ("png", "pdf"):
            path = out / f"{name}__{spec.headline.replace('/', '-')}.{suffix}"
            fig.savefig(path, dpi=200)
            written.append(path)
        plt.close(fig)
    return written
