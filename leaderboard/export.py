"""Paper export: the headline and model tables as LaTeX, the per-layer figures as PNG and PDF (with
interval bands), and for a pair of models their paired differences as CSV, LaTeX and a figure; all
from the same ``Board``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from idsuite.leaderboard.charts import axis_title
from idsuite.leaderboard.data import PAIRED_SPECS, TABLE_SPECS, Board
from idsuite.leaderboard.figures import Curve, LayerFigure, draw_all
from idsuite.leaderboard.paper_tables import facts_table, headline_table, paired_table
from idsuite.results.compare import PAIRED_COLUMNS
from idsuite.results.store import model_folder
from idsuite.suite.specs import SPECS


def layer_figure(board: Board, metric: str, variant: str, normalise_depth: bool = True) -> LayerFigure | None:
    """Every model's curve of one metric variant with its interval band (a control dashed, paired
    with its trained model; panels by family beyond ``figures.PANEL_CURVES`` curves); None if there
    are no rows."""
    table = board.model_table()
    curves = board.layer_curves(table["model"].tolist(), metric, variant, normalise_depth)
    if curves.empty:
        return None
    spec = SPECS.get(metric)
    control = dict(zip(table["model"], table["trained"] == "control", strict=True))
    base = {m: b if isinstance(b, str) else "" for m, b in zip(table["model"], table["control_of"], strict=True)}
    family = {m: f if isinstance(f, str) else "unknown" for m, f in zip(table["model"], table["family"], strict=True)}
    lines = tuple(Curve(str(model), part["depth"].to_numpy(), part["value"].to_numpy(), bool(control[model]),
                        family[model], part["ci_low"].to_numpy(), part["ci_high"].to_numpy(), base[model])
                  for model, part in curves.groupby("model", sort=True))
    return LayerFigure(f"{spec.display_name} per layer", "layer / number of layers" if normalise_depth else "layer",
                       axis_title(spec, variant), not normalise_depth, lines)


def latex_tables(board: Board, table: pd.DataFrame, rank_by: str | None = None) -> str:
    """The headline table (ranked by ``rank_by``, default the first main-table metric) and the model
    facts table, one after the other."""
    return headline_table(board, table, rank_by or TABLE_SPECS[0].name) + "\n" + facts_table(table)


def export(board: Board, out: Path, rank_by: str | None = None) -> list[Path]:
    """Write ``leaderboard.tex`` and ``<metric>__<variant>.png/.pdf`` into ``out`` (``-p1``, ``-p2``, ...
    for a figure of several pages); return the paths.
    The board's store connection is closed once the tables are written (the figures fork)."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "leaderboard.tex"]
    _atomic_text(written[0], latex_tables(board, board.model_table(), rank_by))
    board.close()  # the figures need no more reads, and draw_all forks: no DuckDB threads then
    jobs = [(figure, out / f"{name}__{spec.headline.replace('/', '-')}") for name, spec in SPECS.items()
            if (figure := layer_figure(board, name, spec.headline)) is not None]
    return written + draw_all(jobs)


def _atomic_text(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def export_paired(board: Board, model_a: str, model_b: str | None, out: Path) -> list[Path]:
    """``paired__<a>__vs__<b>.csv``, ``.tex`` and ``.png/.pdf``: per metric headline, ``a - b`` per
    layer and for the headline on the same sentences, with paired bootstrap 95% intervals (the
    figure: one panel per metric, the difference per layer with its band and the zero line).
    ``model_b`` None: ``a``'s random-init control."""
    model_b = model_b or board.control_for(model_a)
    if model_b is None:
        raise ValueError(f"{model_a!r} has no random-init control in these results; name the second model")
    frames = []
    for spec in PAIRED_SPECS:
        diff = board.paired(model_a, model_b, spec.name)
        if len(diff):
            frames.append(diff.assign(metric=spec.name, variant=spec.headline))
    if not frames:
        raise ValueError(f"{model_a!r} and {model_b!r} share no sentences (or their layers differ)")
    table = pd.concat(frames, ignore_index=True)[["metric", "variant", *PAIRED_COLUMNS]]
    stem = out / f"paired__{model_folder(model_a)}__vs__{model_folder(model_b)}"
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(stem.with_suffix(".csv"), index=False)
    _atomic_text(stem.with_suffix(".tex"), paired_table(table, model_a, model_b, f"tab:{stem.name}"))
    jobs = []
    for metric, part in table[table["layer"].notna()].groupby("metric", sort=False):
        spec = SPECS.get(metric)
        x = part["layer"].astype(float).to_numpy()
        curve = Curve(f"{model_a} - {model_b}", x, part["difference"].to_numpy(dtype=float),
                      low=part["ci_low"].to_numpy(dtype=float), high=part["ci_high"].to_numpy(dtype=float))
        figure = LayerFigure(f"{spec.display_name}: {model_a} minus {model_b}", "layer",
                             axis_title(spec, spec.headline, difference=True), True, (curve,), zero_line=True)
        jobs.append((figure, Path(f"{stem}__{metric}")))
    return [stem.with_suffix(".csv"), stem.with_suffix(".tex"), *draw_all(jobs)]

