"""Tables for the terminal: text left-aligned, wrapped into blocks that fit its width."""

from __future__ import annotations

import shutil

import pandas as pd


def terminal_width() -> int:
    """The terminal's width (80 when not a terminal)."""
    return shutil.get_terminal_size((80, 24)).columns


def fit(table: pd.DataFrame, width: int | None = None, index: bool = True, key: str | None = None) -> str:
    """``table`` as text whose lines fit ``width`` (columns wrap into blocks); text columns are
    left-aligned, numbers right-aligned, missing values blank. With ``key`` (a column; ``index``
    is then ignored) every block starts with that column, so each row can be read across blocks."""
    width = width or terminal_width()
    if isinstance(table.columns, pd.MultiIndex):  # the per-layer tables: numbers only
        return table.to_string(index=index, line_width=width, na_rep="")
    shown = {}
    for column in table.columns:
        values = table[column]
        is_text = values.dtype == object or pd.api.types.is_string_dtype(values)
        if not is_text and not pd.api.types.is_extension_array_dtype(values):
            shown[column] = values
            continue
        text = values.astype(object).where(values.notna(), "").astype(str)
        size = max(int(text.str.len().max()) if len(text) else 0, len(str(column)))
        name = str(column).ljust(size) if is_text else str(column).rjust(size)
        shown[name] = text.str.ljust(size) if is_text else text.str.rjust(size)
    frame = pd.DataFrame(shown, index=table.index)
    if key is None:
        return frame.to_string(index=index, line_width=width, na_rep="")
    first = next((name for name in frame.columns if name.strip() == key), None)
    if first is None:
        raise ValueError(f"no column {key!r} to lead the blocks")
    blocks: list[list[str]] = [[]]
    for column in frame.columns.drop(first):
        trial = frame[[first, *blocks[-1], column]].to_string(index=False, na_rep="")
        if blocks[-1] and max(map(len, trial.splitlines())) > width:
            blocks.append([])
        blocks[-1].append(column)
    return "\n\n".join(frame[[first, *block]].to_string(index=False, na_rep="") for block in blocks)
