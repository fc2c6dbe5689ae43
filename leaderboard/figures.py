"""Per-layer figures for papers, drawn from plain arrays with matplotlib (no pyplot, no global state).

``draw`` writes one figure as PNG and PDF, ``draw_all`` many (on Linux the PDFs in a forked child
while this process draws the PNGs); ``idsuite.leaderboard.export`` shapes the data into ``LayerFigure``
objects.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

PNG_DPI = 150
FORMATS = ("png", "pdf")
LEGEND_MODELS = 12
"""Up to this many curves a figure names each model; beyond it, curves are coloured by group (the
model family) and the legend names the groups."""


@dataclass(frozen=True)
class Curve:
    """One model's values ``y`` at layers (or normalised depths) ``x``."""

    label: str
    x: np.ndarray
    y: np.ndarray
    control: bool = False
    group: str = ""


@dataclass(frozen=True)
class LayerFigure:
    title: str
    x_label: str
    y_label: str
    integer_x: bool
    curves: tuple[Curve, ...] = field(default_factory=tuple)


def draw(figure: LayerFigure, stem: Path, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` (``formats``): every curve, controls dashed; return the paths."""
    fig = Figure(figsize=(6.5, 3.5))  # no pyplot: nothing global, no GUI backend
    fig.subplots_adjust(left=0.1, right=0.7, bottom=0.14, top=0.9)
    ax = fig.subplots()
    if len(figure.curves) <= LEGEND_MODELS:
        for c in figure.curves:
            ax.plot(c.x, c.y, marker="o", markersize=3, label=c.label, linestyle="--" if c.control else "-")
    else:  # one collection per group and kind: fast to draw, and a legend that stays readable
        for i, group in enumerate(sorted({c.group for c in figure.curves})):
            for control in (False, True):
                members = [np.column_stack([c.x, c.y]) for c in figure.curves if c.group == group and c.control == control]
                if members:
                    ax.add_collection(LineCollection(members, colors=f"C{i % 10}", linewidths=0.8, alpha=0.6,
                                                     linestyles="--" if control else "-",
                                                     label=f"{group}{' (control)' if control else ''}"))
        ax.autoscale_view()
    if figure.integer_x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(figure.x_label)
    ax.set_ylabel(figure.y_label)
    ax.set_title(figure.title, fontsize=9)
    entries = len(ax.get_legend_handles_labels()[1])
    ax.legend(fontsize=6, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncols=2 if entries > 14 else 1)
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
