"""Paper figures: ``draw_all`` writes each figure as PNG and PDF (on Linux the PDFs from a forked
child), the same files as drawing them one by one; a child that fails or hangs is reaped and its
PDFs drawn here; an error of this process's own drawing is raised with the child reaped."""

import os
import sys
import time

import numpy as np
import pytest

from idsuite.leaderboard import figures
from idsuite.leaderboard.figures import Curve, LayerFigure, draw, draw_all

LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the PDFs are drawn in a child on Linux only")


def layer_figures(count=3):
    x = np.arange(1, 7)
    return [LayerFigure(f"metric {k}", "layer", "value", True,
                        (Curve("model", x, np.sqrt(x) * (k + 1)), Curve("control", x, x * 0 + 0.5, control=True)))
            for k in range(count)]


def valid(path):
    data = path.read_bytes()
    return data.startswith(b"\x89PNG") if path.suffix == ".png" else data.startswith(b"%PDF") and b"%%EOF" in data[-32:]


def expected(folder, count):
    return [folder / f"f{k}.{suffix}" for k in range(count) for suffix in ("png", "pdf")]


@pytest.mark.parametrize("platform", ["linux", "darwin"])
def test_draw_all_writes_what_drawing_one_by_one_writes(tmp_path, monkeypatch, platform):
    monkeypatch.setattr(sys, "platform", platform)  # darwin: one after the other, no child
    (tmp_path / "all").mkdir()
    jobs = [(f, tmp_path / "all" / f"f{k}") for k, f in enumerate(layer_figures())]
    paths = draw_all(jobs)
    assert paths == expected(tmp_path / "all", 3) and all(valid(p) for p in paths)
    (tmp_path / "one").mkdir()
    single = [p for f, stem in jobs for p in draw(f, tmp_path / "one" / stem.name)]
    for together, alone in zip(paths, single, strict=True):  # the same pictures (PDFs differ by their timestamps)
        assert together.suffix == ".pdf" or together.read_bytes() == alone.read_bytes()


def _pdf_in_child(behaviour, calls):
    """``draw`` whose PDFs misbehave in a forked child only; calls in this process are recorded."""
    parent = os.getpid()

    def patched(figure, stem, formats=figures.FORMATS):
        if os.getpid() != parent:
            behaviour()
        calls.append(formats)
        return draw(figure, stem, formats)

    return patched


@LINUX
@pytest.mark.parametrize("behaviour", ["fails", "hangs"])
def test_a_child_that_fails_or_hangs_is_replaced_by_this_process(tmp_path, monkeypatch, behaviour):
    calls = []
    misbehave = {"fails": lambda: 1 / 0, "hangs": lambda: time.sleep(3600)}[behaviour]
    monkeypatch.setattr(figures, "draw", _pdf_in_child(misbehave, calls))
    monkeypatch.setattr(figures, "CHILD_GRACE", 1.0)
    start = time.monotonic()
    paths = draw_all([(f, tmp_path / f"f{k}") for k, f in enumerate(layer_figures(2))])
    assert paths == expected(tmp_path, 2) and all(valid(p) for p in paths)
    assert calls == [("png",), ("png",), ("pdf",), ("pdf",)]  # the PDFs drawn here after the child's failure
    assert time.monotonic() - start < 60  # a hanging child is killed, not waited for


@LINUX
def test_an_error_drawing_here_is_raised_and_the_child_reaped(tmp_path, monkeypatch):
    reaped = []
    finished = figures._finished
    monkeypatch.setattr(figures, "_finished", lambda child, timeout: reaped.append(child) or finished(child, timeout))

    def png_fails(figure, stem, formats=figures.FORMATS):
        if formats == ("png",):
            raise OSError("disk full")
        return draw(figure, stem, formats)

    monkeypatch.setattr(figures, "draw", png_fails)
    with pytest.raises(OSError, match="disk full"):
        draw_all([(f, tmp_path / f"f{k}") for k, f in enumerate(layer_figures(2))])
    assert len(reaped) == 1
    with pytest.raises(ChildProcessError):
        os.waitpid(reaped[0], os.WNOHANG)  # no zombie left


@LINUX
def test_finished_reports_the_exit_and_kills_a_late_child():
    assert figures._finished(figures._forked(lambda: None), 30)
    assert not figures._finished(figures._forked(lambda: 1 / 0), 30)
    start = time.monotonic()
    late = figures._forked(lambda: time.sleep(3600))
    assert not figures._finished(late, 0.5) and time.monotonic() - start < 10
    with pytest.raises(ChildProcessError):
        os.waitpid(late, os.WNOHANG)


def _lines(ax):
    """The curves drawn on an axes (not a reference line): lines with a label of their own."""
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


def _bands_match_curves(fig) -> int:
    """Per axes, one interval band (a PolyCollection) per curve, in the curve's colour and over its
    layers; the number of curves of the page."""
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import to_rgb

    count = 0
    for ax in fig.axes:
        lines, bands = _lines(ax), [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(bands) == len(lines) > 0
        for line in lines:
            x = line.get_xdata()
            assert any(np.allclose(to_rgb(band.get_facecolor()[0]), to_rgb(line.get_color()))
                       and np.isclose(band.get_paths()[0].vertices[:, 0].min(), x.min())
                       and np.isclose(band.get_paths()[0].vertices[:, 0].max(), x.max()) for band in bands), line.get_label()
        count += len(lines)
    return count


def _text_is_readable(fig) -> None:
    """Drawn at the column width, every piece of text at least ``FONT_SIZE`` pt."""
    assert tuple(fig.get_size_inches())[0] == figures.COLUMN_WIDTH == 3.3
    fig.canvas.draw()  # tick labels exist once drawn
    texts = [t for t in fig.findobj(lambda a: hasattr(a, "get_fontsize") and hasattr(a, "get_text"))
             if t.get_visible() and t.get_text().strip()]
    assert texts and all(t.get_fontsize() >= figures.FONT_SIZE == 7 for t in texts), sorted(
        {(t.get_text(), t.get_fontsize()) for t in texts if t.get_fontsize() < 7})


def many_curves(pairs: int) -> LayerFigure:
    """``pairs`` trained models and their controls in two families, each with an interval."""
    x = np.arange(1, 7, dtype=float)
    curves = []
    for k in range(pairs):
        family = "bert" if k % 2 else "llama"
        for control in (False, True):
            y = np.sqrt(x) * (1 + k / 10) * (0.5 if control else 1)
            curves.append(Curve(f"m{k:02d}" + ("-random-init" if control else ""), x, y, control, family,
                                y - 0.1, y + 0.1, f"m{k:02d}" if control else ""))
    return LayerFigure("a metric per layer", "layer", "value (higher is better)", True, tuple(curves))


def test_every_curve_of_a_large_figure_has_its_band_in_readable_panels(tmp_path):
    figure = many_curves(15)  # 30 curves: five panels of three pairs, on three pages
    pages = figures.render(figure)
    assert len(pages) == 3 and [len(p.axes) for p in pages] == [2, 2, 1]
    assert sum(_bands_match_curves(p) for p in pages) == 30
    limits = {(ax.get_xlim(), ax.get_ylim()) for p in pages for ax in p.axes}
    assert len(limits) == 1  # one scale: panels compare
    for page in pages:
        _text_is_readable(page)
        for ax in page.axes:  # a model and its control in one panel and one colour
            names = {line.get_label(): line.get_color() for line in _lines(ax)}
            assert len(names) <= figures.PANEL_CURVES
            assert all(names[f"{m}-random-init"] == colour for m, colour in names.items() if f"{m}-random-init" in names)
            assert all(n.removesuffix("-random-init") in names for n in names)
        assert page.get_size_inches()[1] < 7.5  # a page fits a column's height
    paths = draw_all([(figure, tmp_path / "many"), (layer_figures(1)[0], tmp_path / "one")])
    assert [p.name for p in paths] == [f"many-p{k}.{s}" for k in (1, 2, 3) for s in ("png", "pdf")] + ["one.png", "one.pdf"]
    assert all(valid(p) for p in paths)


def test_exported_figures_of_twenty_four_models_give_every_curve_its_band(twelve_models_dir):
    from idsuite.leaderboard.data import Board
    from idsuite.leaderboard.export import layer_figure
    from idsuite.suite.specs import SPECS

    board = Board(twelve_models_dir)
    for name, spec in SPECS.items():
        figure = layer_figure(board, name, spec.headline)
        if figure is None:
            continue
        with_interval = sum(c.low is not None and bool(np.isfinite(c.low).any()) for c in figure.curves)
        assert len(figure.curves) > 12 and with_interval == len(figure.curves), name
        pages = figures.render(figure)
        assert sum(_bands_match_curves(p) for p in pages) == len(figure.curves)
        for page in pages:
            _text_is_readable(page)
