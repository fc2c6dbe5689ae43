"""The feasible-attention example on the model page: each weight of the example sequence's last
rows with its feasible interval ``[min a'_j, max a'_j]`` over ``F_i`` (``docs/metrics.md``)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from idsuite.leaderboard.data import Board
from idsuite.results.query import refs
from idsuite.suite.specs.feasible_attention import SPEC

MAPS = {"map_weight": "weight", "map_low": "low", "map_high": "high"}


def example_rows(board: Board, model_id: str, layer: int, head: int) -> tuple[list[str], pd.DataFrame] | None:
    """The example sequence's tokens and, for one layer and head, a row per (query, key) with the
    model's ``weight`` and its interval [``low``, ``high``]; ``None`` when the cell has none."""
    cell = board._cell(model_id, SPEC.name)
    if cell.empty:
        return None
    rows = board.query.cell_rows(
        refs(cell), where="variant = 'token' OR (variant IN ('map_weight', 'map_low', 'map_high') AND layer = ? AND head = ?)",
        columns=["variant", "query", "key", "label", "value"], parameters=[layer, head])
    tokens = rows[rows["variant"] == "token"].sort_values("key")["label"].tolist()
    cells = rows[rows["variant"].isin(list(MAPS))]
    if cells.empty:
        return None
    table = cells.pivot_table(index=["query", "key"], columns="variant", values="value").rename(columns=MAPS)
    return tokens, table.reset_index()[["query", "key", *MAPS.values()]]


def chart(tokens: list[str], table: pd.DataFrame, title: str) -> alt.VConcatChart:
    """One panel per query row: the weight of each key (a point) and its feasible interval (a rule)."""
    frame = table.assign(token=[f"{int(k)}:{tokens[int(k)]}" if int(k) < len(tokens) else str(k) for k in table["key"]])
    order = frame.sort_values("key")["token"].unique().tolist()
    panels = []
    for query, part in frame.groupby("query"):
        base = alt.Chart(part, title=f"row {query}" + (f" ({tokens[int(query)]})" if int(query) < len(tokens) else ""))
        x = alt.X("token:O", sort=order, title="key")
        rule = base.mark_rule(strokeWidth=3, opacity=0.5).encode(x=x, y=alt.Y("low:Q", scale=alt.Scale(domain=[0, 1]),
                                                                                title="attention weight"), y2="high:Q")
        point = base.mark_point(filled=True).encode(
            x=x, y="weight:Q", tooltip=["token", alt.Tooltip("weight:Q", format=".4f"), alt.Tooltip("low:Q", format=".4f"),
                                        alt.Tooltip("high:Q", format=".4f")])
        panels.append(rule + point)
    return alt.vconcat(*panels, title=title)


def show(board: Board, model_id: str, layer: int, head: int) -> None:
    """The model page's section (nothing where the model has no feasible-attention example)."""
    found = example_rows(board, model_id, layer, head)
    if found is None:
        return
    tokens, table = found
    st.subheader("Feasible attention for the example sentence")
    st.caption("Each key's weight (point) and how far it can move (bar) with the head's output unchanged and the "
               "row still a distribution.")
    st.altair_chart(chart(tokens, table, f"feasible intervals, layer {layer}, head {head}"), width="stretch")
