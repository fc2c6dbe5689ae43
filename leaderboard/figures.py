"""Per-layer figures for papers, drawn from plain arrays with matplotlib (no pyplot, no global state).

Every curve carries its interval band; a figure of more than ``PANEL_CURVES`` curves is drawn as
panels on one scale, ``PAGE_PANELS`` to a page. ``draw`` writes one figure as PNG and PDF (a file per
page), ``draw_all`` many (on Linux the PDFs in a forked child while this process draws the PNGs);
``idsuite.leaderboard.export`` shapes the data into ``LayerFigure`` objects.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

PNG_DPI = 200
FORMATS = ("png", "pdf")
COLUMN_WIDTH = 3.3
r"""Inches: a figure is drawn at the column width of a two-column paper, so that its 7 pt text
stays 7 pt when it is included at ``\columnwidth``."""
FONT_SIZE = 7
PLOT_HEIGHT = 2.0
"""Inches of a panel's plot area; its x-axis (``AXIS_HEIGHT``) and legend below it (``LEGEND_ROW``
per row) add to it."""
AXIS_HEIGHT, LEGEND_ROW, PANEL_TITLE = 0.45, 0.17, 0.2
TITLE_CHARACTERS, LABEL_CHARACTERS = 52, 34
"""Line lengths of a wrapped title (8 pt across 3.3 in) and y-axis label (7 pt along the plot)."""
PANEL_CURVES = 6
"""At most this many curves share a panel, each with its band: three trained models beside their
controls. More overlapping bands cannot be told apart at column width, so the curves of a larger
figure are spread over panels on one common scale (a model and its control always in one panel)."""
PAGE_PANELS = 2
"""Panels on one page (one file): two keep a page under 7 in, within a column's height."""


@dataclass(frozen=True)
class Curve:
    """One model's values ``y`` at layers (or normalised depths) ``x``, with their 95% interval
    [``low``, ``high``] drawn as a band where given. ``pair``: the trained model a control belongs to
    (a model and its control share a panel and a colour); empty: the curve's own ``label``."""

    label: str
    x: np.ndarray
    y: np.ndarray
    control: bool = False
    group: str = ""
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    pair: str = ""


@dataclass(frozen=True)
class LayerFigure:
    """Curves over layers with axis labels in words; ``zero_line``: a reference line at 0 (a
    difference)."""

    title: str
    x_label: str
    y_label: str
    integer_x: bool
    curves: tuple[Curve, ...] = field(default_factory=tuple)
    zero_line: bool = False


def panels(curves: tuple[Curve, ...]) -> list[list[list[Curve]]]:
    """The curves as panels of at most ``PANEL_CURVES``, each panel a list of pairs (a trained model
    and its controls, in one colour): pairs ordered by group (family) and name, packed in turn; a
    pair larger than a panel is split."""
    pairs: dict[str, list[Curve]] = {}
    for c in sorted(curves, key=lambda c: (c.control, c.label)):  # the trained model first
        pairs.setdefault(c.pair or c.label, []).append(c)
    out: list[list[list[Curve]]] = [[]]
    for _, members in sorted(pairs.items(), key=lambda item: (item[1][0].group, item[0])):
        for start in range(0, len(members), PANEL_CURVES):
            part = members[start:start + PANEL_CURVES]
            if sum(map(len, out[-1])) + len(part) > PANEL_CURVES:
                out.append([])
            out[-1].append(part)
    return out if out[0] else []


def pages(figure: LayerFigure) -> list[list[list[list[Curve]]]]:
    """The figure's panels, ``PAGE_PANELS`` to a page (at least one page)."""
    found = panels(figure.curves)
    return [found[k:k + PAGE_PANELS] for k in range(0, len(found), PAGE_PANELS)] or [[]]


def page_stems(figure: LayerFigure, stem: Path) -> list[Path]:
    """``stem`` for a figure of one page; ``stem-p1``, ``stem-p2``, ... for more."""
    count = len(pages(figure))
    return [stem] if count == 1 else [stem.with_name(f"{stem.name}-p{k}") for k in range(1, count + 1)]


def _file(stem: Path, suffix: str) -> Path:
    return stem.with_name(f"{stem.name}.{suffix}")  # a model id with a dot in the stem stays whole


def _limits(values: list[np.ndarray], pad: float = 0.05) -> tuple[float, float] | None:
    finite = np.concatenate([np.asarray(v, dtype=float).ravel() for v in values]) if values else np.array([])
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return None
    low, high = float(finite.min()), float(finite.max())
    margin = (high - low) * pad or max(abs(high), 1.0) * pad
    return low - margin, high + margin


def render(figure: LayerFigure) -> list[Figure]:
    """The figure's pages at ``COLUMN_WIDTH``: per panel every curve with its interval band, a model
    and its control in one colour (the control dashed), the legend below the panel (the page grows
    with it); every panel of every page on the same x and y limits, so that panels compare."""
    every = list(figure.curves)
    y_limits = _limits([a for c in every for a in (c.y, c.low, c.high) if a is not None])
    x_limits = _limits([c.x for c in every], pad=0.03)
    title = textwrap.fill(figure.title, TITLE_CHARACTERS)
    y_label = textwrap.fill(figure.y_label, LABEL_CHARACTERS)
    left = (0.42 + 0.13 * (y_label.count("\n") + 1)) / COLUMN_WIDTH  # tick labels, then the label lines
    sheets = pages(figure)
    several = len(sheets) > 1 or len(sheets[0]) > 1
    out = []
    for number, sheet in enumerate(sheets, start=1):
        heading = title + (f" ({number} of {len(sheets)})" if len(sheets) > 1 else "")
        top = 0.12 + 0.15 * (heading.count("\n") + 1)
        blocks = []  # per panel: (its curves as pairs, legend rows)
        for panel in sheet or [[]]:
            count = sum(map(len, panel))
            blocks.append((panel, -(-count // 2) if count > 1 else 0))  # two legend columns
        heights = [(PANEL_TITLE if several else 0) + PLOT_HEIGHT + AXIS_HEIGHT + (LEGEND_ROW * rows + 0.1 if rows else 0)
                   for _, rows in blocks]
        height = top + sum(heights)
        fig = Figure(figsize=(COLUMN_WIDTH, height))  # no pyplot: nothing global, no GUI backend
        fig.suptitle(heading, fontsize=FONT_SIZE + 1, y=1 - 0.06 / height, va="top")
        upper = height - top  # inches from the bottom to the top of the next panel block
        for (panel, rows), block in zip(blocks, heights, strict=True):
            plot_top = upper - (PANEL_TITLE if several else 0)
            bottom = plot_top - PLOT_HEIGHT
            ax = fig.add_axes((left, bottom / height, 0.97 - left, PLOT_HEIGHT / height))
            _panel(ax, figure, panel, y_label, several)
            if x_limits:
                ax.set_xlim(*x_limits)
            if y_limits:
                ax.set_ylim(*y_limits)
            if rows:  # below the x-axis label, inside the height added for it; trained models in the first
                controls = {c.label for pair in panel for c in pair if c.control}  # column, controls in the second
                entries = sorted(zip(*ax.get_legend_handles_labels(), strict=True), key=lambda e: e[1] in controls)
                fig.legend(*zip(*entries, strict=True), fontsize=FONT_SIZE, frameon=False, loc="upper center",
                           ncols=2, bbox_to_anchor=(0.5, (bottom - AXIS_HEIGHT + 0.05) / height))
            upper -= block
        out.append(fig)
    return out


def _panel(ax, figure: LayerFigure, panel: list[list[Curve]], y_label: str, titled: bool) -> None:
    """One panel: each pair in its colour, each curve with its band; axes labelled in words."""
    ax.tick_params(labelsize=FONT_SIZE)
    for i, pair in enumerate(panel):
        colour = f"C{i % 10}"
        for c in pair:
            if c.low is not None and c.high is not None:
                ax.fill_between(c.x, c.low, c.high, color=colour, alpha=0.15 if c.control else 0.22, linewidth=0)
            ax.plot(c.x, c.y, marker="o", markersize=2.5, linewidth=1, label=c.label, color=colour,
                    linestyle="--" if c.control else "-")
    if figure.zero_line:
        ax.axhline(0.0, color="black", linewidth=0.6, linestyle=":")
    if figure.integer_x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(figure.x_label, fontsize=FONT_SIZE)
    ax.set_ylabel(y_label, fontsize=FONT_SIZE)
    if titled:
        groups = list(dict.fromkeys(c.group for pair in panel for c in pair if c.group))
        ax.set_title(", ".join(groups) + ("; " if groups else "") + "controls dashed", fontsize=FONT_SIZE)


def draw(figure: LayerFigure, stem: Path, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Write each page of ``render(figure)`` as ``<page stem>.png`` and ``.pdf`` (``formats``; the
    page stems of ``page_stems``); return the paths."""
    paths = []
    for fig, page in zip(render(figure), page_stems(figure, stem), strict=True):
        for suffix in formats:
            paths.append(_file(page, suffix))
            fig.savefig(paths[-1], dpi=PNG_DPI)
    return paths


CHILD_PATIENCE, CHILD_GRACE = 10.0, 10.0
"""``draw_all`` waits for its child ``CHILD_PATIENCE`` times this process's own drawing time plus
``CHILD_GRACE`` seconds."""


def _forked(work: Callable[[], object]) -> int | None:
    """Run ``work`` in a forked child that leaves with ``os._exit`` whatever happens (0 when it
    returned); the child's pid, or None where this system cannot fork now."""
    try:
        child = os.fork()
    except OSError:
        return None
    if child == 0:
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    return child


def _finished(child: int, timeout: float) -> bool:
    """Whether the child exited with status 0 within ``timeout`` seconds; one still running then is
    killed. Either way it is reaped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid:
            return os.waitstatus_to_exitcode(status) == 0
        time.sleep(0.005)
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    return False


def draw_all(jobs: list[tuple[LayerFigure, Path]]) -> list[Path]:
    """``draw`` for every (figure, stem); the paths, PNG and PDF of each page in turn. Each format renders
    the whole figure again, so on Linux a forked child draws the PDFs while this process draws the
    PNGs (the export's largest cost, halved on two cores). The child only draws and writes; if it
    fails, or has not finished long after this process (``CHILD_PATIENCE``), this process draws the
    PDFs itself, so an error is raised here and nothing waits for ever."""
    pdfs = lambda: [draw(figure, stem, ("pdf",)) for figure, stem in jobs]  # noqa: E731
    child = _forked(pdfs) if sys.platform.startswith("linux") and jobs else None
    start = time.monotonic()
    try:
        for figure, stem in jobs:
            draw(figure, stem, ("png",) if child else FORMATS)
    finally:
        done = child is not None and _finished(child, CHILD_PATIENCE * (time.monotonic() - start) + CHILD_GRACE)
    if child is not None and not done:
        pdfs()
    return [_file(page, suffix) for figure, stem in jobs for page in page_stems(figure, stem) for suffix in FORMATS]
