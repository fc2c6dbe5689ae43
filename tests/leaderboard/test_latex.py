"""The exported tables compiled by a stock pdflatex in a one- and a two-column article: no box
wider than the column (no "Overfull \\hbox"), every table's width measured against \\columnwidth.
Skipped without pdflatex, unless ``IDSUITE_REQUIRE_LATEX=1`` (CI sets it), where a missing engine
fails."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from idsuite.leaderboard.data import Board
from idsuite.leaderboard.export import export, export_paired
from idsuite.leaderboard.latex import PACKAGES, Section, Table, escape

PDFLATEX = shutil.which("pdflatex")
if not PDFLATEX and os.environ.get("IDSUITE_REQUIRE_LATEX") != "1":
    pytest.skip("no pdflatex (apt-get install texlive-latex-base texlive-latex-recommended)", allow_module_level=True)

DOCUMENT = r"""\documentclass[%s]{article}
\usepackage{%s}
\begin{document}
\typeout{COLUMNWIDTH=\the\columnwidth}
%s
\end{document}
"""


def compile_tables(folder, paths, columns: str) -> str:
    """pdflatex over an article (``columns``: its class option) that inputs each table; the log.
    A tabularx table is set at \\columnwidth: columns wider than that make an overfull box."""
    body = "\n".join(rf"\input{{{p}}}" for p in paths)
    (folder / "paper.tex").write_text(DOCUMENT % (columns, ",".join(PACKAGES), body))
    assert PDFLATEX, "IDSUITE_REQUIRE_LATEX=1 but pdflatex is missing"
    done = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=folder,
                          capture_output=True, text=True, timeout=120)
    log = (folder / "paper.log").read_text(errors="replace")
    assert done.returncode == 0, log[-3000:]
    return log


@pytest.mark.parametrize("columns", ["", "twocolumn"])
def test_the_exported_tables_fit_the_column_of_a_one_and_a_two_column_article(results_dir, twelve_models_dir,
                                                                               tmp_path, columns):
    paths = []
    for name, store in (("five", results_dir), ("twelve", twelve_models_dir)):
        out = tmp_path / name
        board = Board(store)
        model = board.trained()[0]
        paths += [p for p in export_paired(board, model, None, out) if p.suffix == ".tex"]
        paths += [p for p in export(board, out) if p.suffix == ".tex"]
    log = compile_tables(tmp_path, paths, columns)
    width = float(re.search(r"COLUMNWIDTH=([\d.]+)pt", log).group(1))
    assert width == (229.5 if columns else 345.0)  # the article class's column, as measured
    assert "Overfull \\hbox" not in log, [line for line in log.splitlines() if "Overfull" in line]
    assert (tmp_path / "paper.pdf").stat().st_size > 5000


def test_a_table_too_wide_for_the_column_is_caught(tmp_path):
    # the check itself: eight wide number columns cannot fit a two-column article's 229.5 pt
    wide = Table([r">{\raggedright\arraybackslash}X", *["r"] * 8], ["model", *[f"metric {i}" for i in range(8)]],
                 [Section([[escape("a_model"), *["0.123456789"] * 8]])], "Too wide.", "tab:wide")
    (tmp_path / "wide.tex").write_text(wide.render())
    log = compile_tables(tmp_path, [tmp_path / "wide.tex"], "twocolumn")
    assert "Overfull \\hbox" in log
