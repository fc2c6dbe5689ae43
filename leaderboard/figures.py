"""Per-layer figures for papers, drawn from plain arrays with matplotlib (no pyplot, no global state).

``draw`` writes one figure as PNG and PDF, ``draw_all`` many (on Linux the PDFs in a forked child
while this process draws the PNGs); ``idsuite.leaderboard.export`` shapes the data into ``LayerFigure``
objects.
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
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

PNG_DPI = 200
FORMATS = ("png", "pdf")
COLUMN_WIDTH = 3.3
r"""Inches: a figure is drawn at the column width of a two-column paper, so that its 7 pt text
stays 7 pt when it is included at ``\columnwidth``."""
FONT_SIZE = 7
PLOT_HEIGHT = 2.0
"""Inches of the plot area; the legend below it adds ``LEGEND_ROW`` per row."""
LEGEND_ROW = 0.17
TITLE_CHARACTERS, LABEL_CHARACTERS = 52, 34
"""Line lengths of a wrapped title (8 pt across 3.3 in) and y-axis label (7 pt along the plot)."""
LEGEND_MODELS = 12
"""Up to this many curves a figure names each model; beyond it, curves are coloured by group (the
model family) and the legend names the groups."""


@dataclass(frozen=True)
class Curve:
    """One model's values ``y`` at layers (or normalised depths) ``x``, with their 95% interval
    [``low``, ``high``] drawn as a band where given."""

    label: str
    x: np.ndarray
    y: np.ndarray
    control: bool = False
    group: str = ""
    low: np.ndarray | None = None
    high: np.ndarray | None = None


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


def _legend_rows(figure: LayerFigure) -> int:
    entries = (len(figure.curves) if len(figure.curves) <= LEGEND_MODELS
               else len({(c.group, c.control) for c in figure.curves}))
    return -(-entries // 2)  # two columns


def draw(figure: LayerFigure, stem: Path, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` (``formats``) at ``COLUMN_WIDTH``: every curve with its
    interval band, controls dashed, the legend below the plot (the figure grows with it); return
    the paths."""
    rows = _legend_rows(figure) if len(figure.curves) > 1 else 0
    legend = LEGEND_ROW * rows + (0.1 if rows else 0)
    title = textwrap.fill(figure.title, TITLE_CHARACTERS)
    y_label = textwrap.fill(figure.y_label, LABEL_CHARACTERS)
    top = 0.12 + 0.15 * (title.count("\n") + 1)
    height = PLOT_HEIGHT + top + 0.45 + legend
    fig = Figure(figsize=(COLUMN_WIDTH, height))  # no pyplot: nothing global, no GUI backend
    left = (0.42 + 0.13 * (y_label.count("\n") + 1)) / COLUMN_WIDTH  # tick labels, then the label lines
    fig.subplots_adjust(left=left, right=0.97, top=1 - top / height, bottom=(0.45 + legend) / height)
    ax = fig.subplots()
    ax.tick_params(labelsize=FONT_SIZE)
    if len(figure.curves) <= LEGEND_MODELS:
        for i, c in enumerate(figure.curves):
            colour = f"C{i % 10}"
            if c.low is not None and c.high is not None:
                ax.fill_between(c.x, c.low, c.high, color=colour, alpha=0.18, linewidth=0)
            ax.plot(c.x, c.y, marker="o", markersize=2.5, linewidth=1, label=c.label, color=colour,
                    linestyle="--" if c.control else "-")
    else:  # one collection per group and kind: fast to draw, and a legend that stays readable
        for i, group in enumerate(sorted({c.group for c in figure.curves})):
            for control in (False, True):
                members = [np.column_stack([c.x, c.y]) for c in figure.curves if c.group == group and c.control == control]
                if members:
                    ax.add_collection(LineCollection(members, colors=f"C{i % 10}", linewidths=0.8, alpha=0.6,
                                                     linestyles="--" if control else "-",
                                                     label=f"{group}{' (control)' if control else ''}"))
        ax.autoscale_view()
    if figure.zero_line:
        ax.axhline(0.0, color="black", linewidth=0.6, linestyle=":")
    if figure.integer_x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(figure.x_label, fontsize=FONT_SIZE)
    ax.set_ylabel(y_label, fontsize=FONT_SIZE)
    ax.set_title(title, fontsize=FONT_SIZE + 1)
    if rows:  # below the x-axis label, inside the height added for it
        fig.legend(*ax.get_legend_handles_labels(), fontsize=FONT_SIZE, frameon=False, loc="lower center", ncols=2,
                   bbox_to_anchor=(0.5, 0.02))
    paths = [stem.with_suffix(f".{suffix}") for suffix in formats]
    for path in paths:
        fig.savefig(path, dpi=PNG_DPI)
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
    """``draw`` for every (figure, stem); the paths, PNG and PDF of each in turn. Each format renders
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
    return [stem.with_suffix(f".{suffix}") for _, stem in jobs for suffix in FORMATS]
