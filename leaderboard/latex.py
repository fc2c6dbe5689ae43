"""The one LaTeX writer of the paper export: booktabs tables that fit ``\\columnwidth``.

Every table is a ``tabularx`` of width ``\\columnwidth``: one wrapping ``X`` column (model ids
break after ``/``, ``-``, ``_`` and ``.``) takes what the narrow number columns leave, so a table
fits a one- and a two-column article alike. Each table names the packages it needs in a comment,
has a ``\\label`` and a caption that says what every column and sign means.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

PACKAGES = ("booktabs", "tabularx")
"""What a document needs in its preamble for these tables (tabularx loads array)."""
RAGGED = r">{\raggedright\arraybackslash}X"
"""The wrapping column, set ragged right (a justified narrow column stretches its spaces)."""
_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def escape(text: object) -> str:
    """Plain text made safe for LaTeX."""
    return "".join(_SPECIAL.get(c, c) for c in str(text))


def breakable(text: object) -> str:
    """``escape`` with a permitted line break after each ``/``, ``-``, ``_`` and ``.`` (model ids)."""
    return re.sub(r"(/|-|\\_|\.)", r"\1\\allowbreak{}", escape(text))


def stacked(*lines: str, align: str = "r") -> str:
    """Several lines in one cell (a nested tabular without padding)."""
    return rf"\begin{{tabular}}[t]{{@{{}}{align}@{{}}}}" + r" \\ ".join(lines) + r"\end{tabular}"


def estimate(value: float | None, half: float | None, digits: int = 3) -> str:
    """A value over its ``±`` half-width (smaller, second line); the value alone without one."""
    if value is None or value != value:
        return "--"
    if half is None or half != half:
        return f"{value:.{digits}f}"
    return stacked(f"{value:.{digits}f}", rf"{{\scriptsize $\pm${half:.{digits}f}}}")


@dataclass(frozen=True)
class Section:
    """Rows under an optional italic title spanning the table (e.g. "Random-init controls")."""

    rows: Sequence[Sequence[str]]
    title: str = ""


@dataclass(frozen=True)
class Table:
    """A booktabs ``tabularx`` of width ``\\columnwidth``. ``columns``: one tabularx column type per
    column (exactly one ``X``, the wrapping one); ``header``: one cell per column (may be
    ``stacked``); ``footer``: rows after a rule (sample sizes, say); ``size`` and ``gap``: the font
    size command and ``\tabcolsep``."""

    columns: Sequence[str]
    header: Sequence[str]
    sections: Sequence[Section]
    caption: str
    label: str
    footer: Sequence[Sequence[str]] = field(default_factory=tuple)
    size: str = "footnotesize"
    gap: str = "3pt"

    def render(self) -> str:
        if sum(c.endswith("X") for c in self.columns) != 1:
            raise ValueError("a table needs exactly one wrapping X column")
        width = len(self.columns)
        spec = "@{}" + "".join(self.columns) + "@{}"
        lines = [f"% Needs \\usepackage{{{','.join(PACKAGES)}}} in the preamble.",
                 r"\begin{table}[t]", r"\centering", f"\\{self.size}", rf"\setlength{{\tabcolsep}}{{{self.gap}}}",
                 rf"\begin{{tabularx}}{{\columnwidth}}{{{spec}}}", r"\toprule", " & ".join(self.header) + r" \\",
                 r"\midrule"]
        for i, section in enumerate(self.sections):
            if i:
                lines.append(r"\midrule")
            if section.title:
                lines.append(rf"\multicolumn{{{width}}}{{@{{}}l}}{{\emph{{{escape(section.title)}}}}} \\")
            lines += [" & ".join(row) + r" \\[2pt]" for row in section.rows]
        if self.footer:
            lines.append(r"\midrule")
            lines += [" & ".join(row) + r" \\" for row in self.footer]
        lines += [r"\bottomrule", r"\end{tabularx}", rf"\caption{{{self.caption}}}", rf"\label{{{self.label}}}",
                  r"\end{table}"]
        return "\n".join(lines) + "\n"
