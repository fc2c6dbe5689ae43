"""Per-layer figures for papers, drawn from plain arrays with matplotlib (no pyplot, no global state).

``draw`` writes one figure as PNG and PDF, ``draw_all`` many (on Linux the PDFs in a forked child
while this process draws the PNGs); ``leaderboard.export`` shapes the data into ``LayerFigure``
objects.
"""

from __future__ import annotations

import os
import sys
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


def draw_all(jobs: list[tuple[LayerFigure, Path]]) -> list[Path]:
    """``draw`` for every (figure, stem); the paths, PNG and PDF of each in turn. Each format renders
    the whole figure again, so on Linux a forked child draws the PDFs while this process draws the
    PNGs (the export's largest cost, halved on two cores); the child only draws and writes, and
    reports a failure as one line."""
    if not sys.platform.startswith("linux") or not jobs:
        return [path for figure, stem in jobs for path in draw(figure, stem)]
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: PDFs only, then leave at once (nothing of the parent's runs here)
        os.close(read)
        code = 0
        try:
            for figure, stem in jobs:
                draw(figure, stem, ("pdf",))
        except BaseException as e:  # reported to the parent, which raises
            os.write(write, f"{type(e).__name__}: {e}".encode()[:2000])
            code = 1
        os._exit(code)
    os.close(write)
    try:
        for figure, stem in jobs:
            draw(figure, stem, ("png",))
    finally:
        with os.fdopen(read, "rb") as pipe:
            reason = pipe.read().decode(errors="replace")
        _, status = os.waitpid(child, 0)
    if status != 0:
        raise RuntimeError(f"drawing the PDF figures failed: {reason or f'child exit status {status}'}")
    return [stem.with_suffix(f".{suffix}") for _, stem in jobs for suffix in FORMATS]
