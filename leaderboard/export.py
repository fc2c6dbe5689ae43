"""Paper export: the main table as LaTeX and the per-layer figures as PNG and PDF, from the same data."""

from __future__ import annotations

from pathlib import Path

from leaderboard.data import Board, latex_table
from leaderboard.figures import Curve, LayerFigure, draw
from suite.specs import SPECS


def layer_figure(board: Board, metric: str, variant: str, normalise_depth: bool = True) -> LayerFigure | None:
    """Every model's curve of one metric variant (controls marked, models grouped by family); None
    if there are no rows."""
    table = board.model_table().set_index("model")
    curves = board.layer_curves(table.index.tolist(), metric, variant, normalise_depth)
    if curves.empty:
        return None
    spec = SPECS.get(metric)
    unit = spec.variants[variant].unit
    lines = tuple(
        Curve(str(model), part["depth"].to_numpy(), part["value"].to_numpy(), table.at[model, "trained"] == "control",
              str(table.at[model, "family"]) if isinstance(table.at[model, "family"], str) else "unknown")
        for model, part in curves.groupby("model", sort=True)
    )
    return LayerFigure(f"{spec.display_name}: {variant}", "layer / L" if normalise_depth else "layer",
                       f"{variant} ({unit})" if unit else variant, not normalise_depth, lines)


def export(board: Board, out: Path) -> list[Path]:
    """Write ``leaderboard.tex`` and ``<metric>__<variant>.png/.pdf`` into ``out``; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "leaderboard.tex"]
    models = board.cells["model_id"].nunique()
    written[0].write_text(latex_table(board.model_table(), f"Identifiability headlines of {models} "
                                                           f"model{'s' if models != 1 else ''}."))
    for name, spec in SPECS.items():
        figure = layer_figure(board, name, spec.headline)
        if figure is not None:
            written += draw(figure, out / f"{name}__{spec.headline.replace('/', '-')}")
    return written
