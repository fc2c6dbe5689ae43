"""Paper export: the main table as LaTeX and the per-layer figures as PNG and PDF, from the same data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from idsuite.leaderboard.data import PAIRED_SPECS, Board, latex_table
from idsuite.leaderboard.figures import Curve, LayerFigure, draw_all
from idsuite.results.compare import PAIRED_COLUMNS
from idsuite.results.store import model_folder
from idsuite.suite.specs import SPECS


def layer_figure(board: Board, metric: str, variant: str, normalise_depth: bool = True) -> LayerFigure | None:
    """Every model's curve of one metric variant (controls marked, models grouped by family); None
    if there are no rows."""
    table = board.model_table()
    curves = board.layer_curves(table["model"].tolist(), metric, variant, normalise_depth)
    if curves.empty:
        return None
    spec = SPECS.get(metric)
    unit = spec.variants[variant].unit
    control = dict(zip(table["model"], table["trained"] == "control", strict=True))
    family = {m: f if isinstance(f, str) else "unknown" for m, f in zip(table["model"], table["family"], strict=True)}
    models, x, y = curves["model"].to_numpy(), curves["depth"].to_numpy(), curves["value"].to_numpy()
    starts = np.flatnonzero(np.r_[True, models[1:] != models[:-1]])  # the curves come sorted by model
    lines = tuple(Curve(str(models[i]), x[i:j], y[i:j], bool(control[models[i]]), family[models[i]])
                  for i, j in zip(starts, [*starts[1:], len(models)], strict=True))
    return LayerFigure(f"{spec.display_name}: {variant}", "layer / L" if normalise_depth else "layer",
                       f"{variant} ({unit})" if unit else variant, not normalise_depth, lines)


def export(board: Board, out: Path) -> list[Path]:
    """Write ``leaderboard.tex`` and ``<metric>__<variant>.png/.pdf`` into ``out``; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "leaderboard.tex"]
    models = board.cells["model_id"].nunique()
    written[0].write_text(latex_table(board.model_table(), f"Identifiability headlines of {models} "
                                                           f"model{'s' if models != 1 else ''}."))
    jobs = [(figure, out / f"{name}__{spec.headline.replace('/', '-')}") for name, spec in SPECS.items()
            if (figure := layer_figure(board, name, spec.headline)) is not None]
    return written + draw_all(jobs)


def export_paired(board: Board, model_a: str, model_b: str | None, out: Path) -> list[Path]:
    """``paired__<a>__vs__<b>.csv`` and ``.tex``: per metric headline, ``a - b`` per layer and for the
    headline on the same sentences, with paired bootstrap 95% intervals; layers whose interval
    excludes zero are starred in the LaTeX table. ``model_b`` None: ``a``'s random-init control."""
    model_b = model_b or board.control_for(model_a)
    if model_b is None:
        raise ValueError(f"{model_a!r} has no random-init control in these results; name the second model")
    frames = []
    for spec in PAIRED_SPECS:
        name = spec.name
        diff = board.paired(model_a, model_b, name)
        if len(diff):
            frames.append(diff.assign(metric=name, variant=spec.headline))
    if not frames:
        raise ValueError(f"{model_a!r} and {model_b!r} share no sentences (or their layers differ)")
    table = pd.concat(frames, ignore_index=True)[["metric", "variant", *PAIRED_COLUMNS]]
    stem = out / f"paired__{model_folder(model_a)}__vs__{model_folder(model_b)}"
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(stem.with_suffix(".csv"), index=False)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{llrl}", r"\toprule",
             r"metric & layer & difference & 95\% interval \\", r"\midrule"]
    for row in table.itertuples(index=False):
        layer = "headline" if pd.isna(row.layer) else str(int(row.layer))
        star = "$^*$" if row.excludes_zero else ""
        lines.append(f"{SPECS.get(row.metric).display_name} & {layer} & {row.difference:+.3f}{star} & "
                     f"[{row.ci_low:+.3f}, {row.ci_high:+.3f}] \\\\")
    caption = (f"{model_a} minus {model_b} on the same sentences, paired bootstrap 95\\% intervals; "
               "$^*$: the interval excludes zero.").replace("_", r"\_")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{caption}}}", r"\end{table}"]
    stem.with_suffix(".tex").write_text("\n".join(lines) + "\n")
    return [stem.with_suffix(".csv"), stem.with_suffix(".tex")]
