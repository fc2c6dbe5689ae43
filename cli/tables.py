"""Tables for the terminal: text left-aligned, wrapped into blocks that fit its width, each block
with its own row and column headers (a value is never read under another model's name)."""

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
    if isinstance(table.columns, pd.MultiIndex):  # the per-layer tables: layers down, (model, variant) across
        return _fit_grouped(table, width, index)
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


def _fit_grouped(table: pd.DataFrame, width: int, index: bool) -> str:
    """A table with (group, name) columns as blocks that fit ``width``, each rendered on its own with
    the row index and every column's full title (the group repeated over each of its columns, as
    pandas' sparse headers would leave a block's first columns under no name or the previous one).
    A block ends at a group's boundary where the whole group fits the next block."""
    def render(columns: list) -> str:
        with pd.option_context("display.multi_sparse", False):
            return table[columns].to_string(index=index, na_rep="")

    def fits(columns: list) -> bool:
        return max(map(len, render(columns).splitlines())) <= width

    blocks: list[list] = [[]]
    groups = dict.fromkeys(table.columns.get_level_values(0))
    for group in groups:
        members = [c for c in table.columns if c[0] == group]
        if blocks[-1] and not fits(blocks[-1] + members) and fits(members):
            blocks.append([])  # the whole group on the next block
        for column in members:
            if blocks[-1] and not fits([*blocks[-1], column]):
                blocks.append([])
            blocks[-1].append(column)
    return "\n\n".join(render(block) for block in blocks if block)
