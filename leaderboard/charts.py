"""The leaderboard's Altair charts, with one visual language across every view:

- heights grow with the number of series (legends sit below the plot and never eat its height);
- "interval excludes zero" is one encoding everywhere (``SIGNIFICANCE``: a filled dark point, an
  open grey one where the interval includes zero);
- colour: a sequential scale runs from pale (worse) to dark (better) for a quantity with a
  direction (``direction``), pale to dark for magnitude otherwise; a signed quantity (a difference,
  the null part of attention) gets a diverging scale centred on 0;
- maps and head heat maps have square cells of a fixed size (never stretched to the page), maps every
  token labelled.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from idsuite.suite.specs.base import MetricSpec

RANK_WIDTH, MODEL_WIDTH = 50, 150
"""Pixels of the ranked table's pinned first columns: on a 390 px phone the first metric column
still has most of the screen's remaining width."""
PLOT_HEIGHT = 260
"""Height of a chart's plot area in px, whatever its legend."""
CELL = 18
"""Side of a map's square cell in px."""
HEAT_CELL, HEAT_WIDTH = 32, 320
"""A head heat map's square cell in px, at least (cells grow until the plot is ``PLOT_HEIGHT`` tall),
and the most width its cells take, what a 390 px phone shows beside the axis: with more heads than
fit (10 at 32 px), the cells shrink, still square."""
SIGNIFICANCE = {"interval excludes 0": "#08306b", "interval includes 0": "#bdbdbd"}
SIGNIFICANCE_MEANING = ("Dark filled points: layers whose 95% interval excludes zero; grey open points: the "
                        "interval includes zero (the same in every chart).")
FIT_WIDTH = alt.AutoSizeParams(type="fit-x", contains="padding")
"""Charts fill the page's width; their height is the plot area's, the legend and axes added to it
(Streamlit's default fits the whole chart, legend included, into the height: the plot collapsed)."""
PAD = alt.AutoSizeParams(type="pad")
"""A chart as large as its cells and axes say (Streamlit would otherwise ask Vega to fit it to the page)."""
SEQUENTIAL = "blues"
DIVERGING = "redblue"


def axis_title(spec: MetricSpec, variant: str, difference: bool = False) -> str:
    """An axis in words: the variant's description, unit and which way is better."""
    declared = spec.variant(variant)
    better = {"higher": "higher is better", "lower": "lower is better"}.get(declared.direction, "")
    text = ("difference in " if difference else "") + declared.description
    return text + (f" ({', '.join(q for q in (declared.unit, better) if q)})" if declared.unit or better else "")


def _wrapped(title: str, width: int = 60) -> list[str]:
    """A long axis title as lines of at most ``width`` characters (Vega-Lite draws a list as lines)."""
    lines, line = [], ""
    for word in title.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines


def _layer_axis(normalise: bool) -> alt.X:
    if normalise:
        return alt.X("depth:Q", title="layer / number of layers", axis=alt.Axis(format=".2f"))
    return alt.X("depth:Q", title="layer", axis=alt.Axis(format="d", tickMinStep=1))


def line_chart(curves: pd.DataFrame, title: str, y_title: str, normalise: bool = False,
               controls: frozenset[str] = frozenset()) -> alt.LayerChart:
    """One line per model with its band (the 95% interval; a control's spans its seeds' intervals);
    controls drawn wide, dashed and pale beneath, so that a trained model's line stays visible on top
    of an equal control. The plot keeps ``PLOT_HEIGHT`` px; the legend below it adds a row per model."""
    frame = curves.assign(role=["control" if m in controls else "trained" for m in curves["model"]])
    legend = alt.Legend(orient="bottom", labelLimit=0, columns=1, title=None, symbolOpacity=1)  # not the band's
    base = alt.Chart(frame, title=title).encode(
        x=_layer_axis(normalise), color=alt.Color("model:N", legend=legend),
        tooltip=["model", "layer", alt.Tooltip("value:Q", format=".4f"), alt.Tooltip("ci_low:Q", format=".4f"),
                 alt.Tooltip("ci_high:Q", format=".4f")])
    band = base.mark_area(opacity=0.18).encode(y=alt.Y("ci_low:Q", title=_wrapped(y_title)), y2="ci_high:Q")
    line = base.encode(y=alt.Y("value:Q", title=_wrapped(y_title)))
    control = line.transform_filter(alt.datum.role == "control").mark_line(
        strokeWidth=6, opacity=0.35, strokeDash=[6, 3], point=alt.OverlayMarkDef(size=60, opacity=0.5))
    trained = line.transform_filter(alt.datum.role == "trained").mark_line(strokeWidth=2, point=True)
    return alt.layer(band, control, trained).properties(height=PLOT_HEIGHT, autosize=FIT_WIDTH)


def difference_chart(diff: pd.DataFrame, title: str, y_title: str) -> alt.LayerChart:
    """A paired difference per layer with its interval, ``SIGNIFICANCE`` marking the layers whose
    interval excludes zero, and the zero line."""
    frame = diff[diff["layer"].notna()].astype({"layer": int, "excludes_zero": bool})
    names = list(SIGNIFICANCE)
    frame = frame.assign(depth=frame["layer"].astype(float),
                         significant=frame["excludes_zero"].map({True: names[0], False: names[1]}))
    scale = alt.Scale(domain=names, range=list(SIGNIFICANCE.values()))
    base = alt.Chart(frame, title=title).encode(x=_layer_axis(False))
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="black", strokeDash=[2, 2]).encode(y="y:Q")
    bars = base.mark_errorbar(thickness=2).encode(y=alt.Y("ci_low:Q", title=_wrapped(y_title)), y2="ci_high:Q",
                                                  color=alt.Color("significant:N", scale=scale, legend=None))
    points = base.mark_point(size=80, strokeWidth=2).encode(
        y="difference:Q",
        color=alt.Color("significant:N", scale=scale, legend=alt.Legend(orient="bottom", title=None)),
        fill=alt.condition(alt.datum.excludes_zero, alt.Color("significant:N", scale=scale, legend=None),
                           alt.value("white")),
        tooltip=["layer", alt.Tooltip("difference:Q", format=".4f"), alt.Tooltip("ci_low:Q", format=".4f"),
                 alt.Tooltip("ci_high:Q", format=".4f"), "sequences"])
    return alt.layer(zero, bars, points).properties(height=PLOT_HEIGHT, autosize=FIT_WIDTH)


def _colour(direction: str, domain: list[float] | None = None) -> alt.Scale:
    """Sequential, pale = worse and dark = better (``direction`` "lower": reversed)."""
    return alt.Scale(scheme=SEQUENTIAL, reverse=direction == "lower", **({"domain": domain} if domain else {}))


def heat_cell(rows: int, columns: int) -> float:
    """Side in px of the square cells of a ``rows`` x ``columns`` heat map: ``HEAT_CELL``, or larger
    so that the plot is ``PLOT_HEIGHT`` tall, but never wider in all than ``HEAT_WIDTH``."""
    return min(HEAT_WIDTH / max(columns, 1), max(HEAT_CELL, PLOT_HEIGHT / max(rows, 1)))


def heatmap(grid: pd.DataFrame, x: str, y: str, title: str, direction: str = "none") -> alt.Chart:
    """Cells of ``grid`` (rows ``y``, columns ``x``) in index order on the sequential scale, square
    (``heat_cell``): the chart is columns x cell wide and rows x cell tall, whatever the page's width."""
    frame = grid.stack().rename("value").reset_index()
    frame.columns = [y, x, "value"]
    better = {"higher": " (dark = higher = better)", "lower": " (dark = lower = better)"}.get(direction, "")
    cell = heat_cell(*grid.shape)
    return (
        alt.Chart(frame, title=title + better)
        .mark_rect()
        .encode(x=alt.X(f"{x}:O"), y=alt.Y(f"{y}:O", sort="ascending"),
                color=alt.Color("value:Q", scale=_colour(direction), legend=alt.Legend(orient="bottom")),
                tooltip=[x, y, alt.Tooltip("value:Q", format=".4f")])
        .properties(width=alt.Step(cell), height=alt.Step(cell), autosize=PAD)
    )


def _token_axis(labels: list[str]) -> list[str]:
    return [f"{i}:{token}" for i, token in enumerate(labels)]


def _map_frame(grid: np.ndarray, labels: list[str]) -> pd.DataFrame:
    names = _token_axis(labels)
    frame = pd.DataFrame(grid, index=names, columns=names).stack(future_stack=True).rename("value").reset_index()
    frame.columns = ["query", "key", "value"]
    return frame


def _map(frame: pd.DataFrame, names: list[str], title: str, scale: alt.Scale, legend_title: str) -> alt.Chart:
    return (
        alt.Chart(frame, title=title)
        .mark_rect()
        .encode(x=alt.X("key:O", sort=names, title="key token",
                        axis=alt.Axis(labelAngle=-60, labelLimit=120, labelOverlap=False, labelFontSize=10)),
                y=alt.Y("query:O", sort=names, title="query token",
                        axis=alt.Axis(labelLimit=120, labelOverlap=False, labelFontSize=10)),
                color=alt.Color("value:Q", scale=scale, title=legend_title, legend=alt.Legend(orient="bottom")),
                tooltip=["query", "key", alt.Tooltip("value:Q", format=".4f")])
        .properties(width=alt.Step(CELL), height=alt.Step(CELL))
    )


def attention_maps(example: dict[str, object], where: str) -> alt.ConcatChart:
    """Raw and effective attention on one sequential scale [0, max], the null part (raw - effective,
    signed) on a diverging scale symmetric about 0; square cells, every token on both axes."""
    labels = list(example["tokens"])
    names = _token_axis(labels)
    top = float(np.nanmax([np.nanmax(example["raw"]), np.nanmax(example["effective"])]))
    shared = alt.Scale(scheme=SEQUENTIAL, domain=[0, top])
    reach = float(np.nanmax(np.abs(example["null"]))) or 1.0
    signed = alt.Scale(scheme=DIVERGING, domain=[-reach, reach], domainMid=0, reverse=True)
    charts = [_map(_map_frame(example["raw"], labels), names, f"raw attention, {where}", shared, "attention weight"),
              _map(_map_frame(example["effective"], labels), names, f"effective attention, {where}", shared,
                   "attention weight"),
              _map(_map_frame(example["null"], labels), names, f"null part (raw - effective), {where}", signed,
                   "raw - effective")]
    return alt.concat(*charts, columns=1).resolve_scale(color="independent")


def matrix_grid(matrices: dict[str, np.ndarray], order: list[str], labels: list[str] | None, where: str) -> alt.ConcatChart:
    """The context-mixing example matrices on one shared sequential scale, square cells, token labels
    (positions where the tokens are unknown)."""
    names = [n for n in order if n in matrices]
    size = len(next(iter(matrices.values())))
    tokens = labels if labels is not None and len(labels) == size else [str(i) for i in range(size)]
    top = float(np.nanmax([np.nanmax(matrices[n]) for n in names]))
    scale = alt.Scale(scheme=SEQUENTIAL, domain=[0, top])
    axis = _token_axis(tokens)
    charts = [_map(_map_frame(matrices[n], tokens), axis, f"{n}, {where}", scale, "contribution share") for n in names]
    return alt.concat(*charts, columns=2).resolve_scale(color="shared")


def agreement_heatmap(frame: pd.DataFrame, models: list[str], measures: list[str], title: str,
                      direction: str) -> alt.LayerChart:
    """Model x measure scores on the sequential scale (dark = better) with the numbers written in."""
    axes = {"x": alt.X("measure:N", sort=measures, axis=alt.Axis(labelLimit=0, labelAngle=-30)),
            "y": alt.Y("model:N", sort=models, axis=alt.Axis(labelLimit=0))}  # whole names, never cut
    better = "dark = higher = better" if direction == "higher" else "dark = lower = better"
    chart = alt.Chart(frame, title=f"{title} ({better})").mark_rect().encode(
        **axes, color=alt.Color("value:Q", scale=_colour(direction), legend=alt.Legend(orient="bottom")),
        tooltip=["model", "measure", alt.Tooltip("value:Q", format=".3f")])
    values = frame["value"].dropna()
    middle = float(values.min() + values.max()) / 2 if len(values) else 0.0
    dark = (alt.datum.value > middle) if direction == "higher" else (alt.datum.value < middle)
    text = alt.Chart(frame).mark_text(fontSize=11).encode(
        **axes, text=alt.Text("value:Q", format=".2f"), color=alt.condition(dark, alt.value("white"), alt.value("black")))
    return (chart + text).properties(height=alt.Step(28), autosize=FIT_WIDTH)
