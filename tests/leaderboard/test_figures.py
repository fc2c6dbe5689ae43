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
