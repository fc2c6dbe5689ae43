"""Paper figures: ``draw_all`` writes each figure as PNG and PDF (on Linux the PDFs from a forked
child), the same files as drawing them one by one, and a failure in the child is raised here."""

import sys

import numpy as np
import pytest

from leaderboard import figures
from leaderboard.figures import Curve, LayerFigure, draw, draw_all


def layer_figures(count=3):
    x = np.arange(1, 7)
    return [LayerFigure(f"metric {k}", "layer", "value", True,
                        (Curve("model", x, np.sqrt(x) * (k + 1)), Curve("control", x, x * 0 + 0.5, control=True)))
            for k in range(count)]


def valid(path):
    data = path.read_bytes()
    return data.startswith(b"\x89PNG") if path.suffix == ".png" else data.startswith(b"%PDF") and b"%%EOF" in data[-32:]


@pytest.mark.parametrize("platform", ["linux", "darwin"])
def test_draw_all_writes_what_drawing_one_by_one_writes(tmp_path, monkeypatch, platform):
    monkeypatch.setattr(sys, "platform", platform)  # darwin: one after the other, no child
    jobs = [(f, tmp_path / "all" / f"f{k}") for k, f in enumerate(layer_figures())]
    (tmp_path / "all").mkdir()
    paths = draw_all(jobs)
    assert paths == [tmp_path / "all" / f"f{k}.{suffix}" for k in range(3) for suffix in ("png", "pdf")]
    assert all(valid(p) for p in paths)
    (tmp_path / "one").mkdir()
    single = [p for f, stem in jobs for p in draw(f, tmp_path / "one" / stem.name)]
    for together, alone in zip(paths, single, strict=True):  # the same pictures (PDFs differ by their timestamps)
        assert together.suffix == ".pdf" or together.read_bytes() == alone.read_bytes()


def test_a_pdf_that_fails_in_the_child_fails_here(tmp_path, monkeypatch):
    if not sys.platform.startswith("linux"):
        pytest.skip("the PDFs are drawn in a child on Linux only")

    def pdf_fails(figure, stem, formats=figures.FORMATS):
        if formats == ("pdf",):
            raise ValueError("no PDF today")
        return draw(figure, stem, formats)

    monkeypatch.setattr(figures, "draw", pdf_fails)  # the forked child has it too
    with pytest.raises(RuntimeError, match="drawing the PDF figures failed: ValueError: no PDF today"):
        draw_all([(f, tmp_path / f"f{k}") for k, f in enumerate(layer_figures(2))])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f0.png", "f1.png"]  # this process's part is done
