"""Reading the store with DuckDB: Parquet files read in place, only the columns and rows asked for.

``cells()`` lists every stored cell (one row each) from the small summary files; ``summary_rows``
reads the aggregated rows of chosen cells; ``cell_rows`` drills down into the full files of
chosen cells only. A file that cannot be read is skipped and listed in ``bad_files`` instead of
failing the query (the writer quarantines it; a reader never moves files).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from results.schema import ARROW_SCHEMA, FACT_COLUMNS, NAMES, PROVENANCE_COLUMNS, select_list
from results.store import CellRef, ResultStore

CELL_COLUMNS = ["model_id", "metric", "cell_key"]
"""What names a cell in query results."""
_PER_CELL = [c for c in PROVENANCE_COLUMNS + FACT_COLUMNS if c not in CELL_COLUMNS and c != "timestamp"]


def _sql_list(paths: Sequence[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


class ResultQuery:
    """Queries over one store. ``bad_files``: (path, reason) of every file skipped so far."""

    def __init__(self, store: ResultStore | str | Path) -> None:
        self.store = store if isinstance(store, ResultStore) else ResultStore(store)
        self.bad_files: list[tuple[Path, str]] = []
        self._db = duckdb.connect()

    def _readable(self, paths: list[Path]) -> list[Path]:
        good = []
        for path in paths:
            try:
                pq.read_metadata(path)
                good.append(path)
            except (OSError, pa.ArrowException) as e:
                self.bad_files.append((path, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"))
        return good

    def _read(self, paths: list[Path], columns: Sequence[str] | None = None, where: str = "",
              parameters: Sequence[object] = (), query: str = "SELECT * FROM rows") -> pd.DataFrame:
        """``query`` over ``rows``: the ``columns`` of the rows matching ``where`` in ``paths``, older
        files migrated by the schema. Unreadable files are skipped (and recorded in ``bad_files``)."""
        names = list(columns) if columns else NAMES
        if not paths:
            self._db.register("no_rows", pa.table({c: pa.nulls(0, ARROW_SCHEMA.field(c).type) for c in names}))
            rows = "SELECT * FROM no_rows" + (f" WHERE {where}" if where else "")
            return self._db.execute(f"WITH rows AS ({rows}) {query}", list(parameters)).df()
        for attempt in range(2):
            source = f"read_parquet({_sql_list(paths)}, union_by_name = true)"
            try:
                present = {row[0] for row in self._db.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
                rows = f"SELECT {select_list(present, names)} FROM {source}" + (f" WHERE {where}" if where else "")
                return self._db.execute(f"WITH rows AS ({rows}) {query}", list(parameters)).df()
            except duckdb.Error:
                if attempt:
                    raise
                paths = self._readable(paths)  # find and skip the files DuckDB could not read
                if not paths:
                    return self._read([], columns, where, parameters, query)
        raise AssertionError("unreachable")

    def cells(self) -> pd.DataFrame:
        """One row per stored cell: ``model_id, metric, cell_key``, its provenance and model facts,
        ``written`` (UTC time of the cell), ``ok`` (every row finished) and ``error`` (the first)."""
        per_cell = ", ".join(f'any_value("{c}") AS "{c}"' for c in _PER_CELL)
        query = (f"SELECT model_id, metric, cell_key, {per_cell}, max(timestamp) AS written, "
                 "bool_and(status = 'ok') AS ok, any_value(error) AS error FROM rows GROUP BY ALL")
        cells = self._read(self.store.summary_files(), CELL_COLUMNS + _PER_CELL + ["timestamp", "status", "error"],
                           query=query)
        cells["written"] = pd.to_datetime(cells["written"], utc=True, format="ISO8601")
        return cells.sort_values(CELL_COLUMNS, ignore_index=True)

    def summary_rows(self, cells: Iterable[CellRef], where: str = "", columns: Sequence[str] | None = None,
                     parameters: Sequence[object] = ()) -> pd.DataFrame:
        """Rows aggregated over sequences (per layer, per head, per model) of the given cells."""
        return self._read([self.store.summary_path(c) for c in cells], columns, where, parameters)

    def cell_rows(self, cells: Iterable[CellRef], where: str = "", columns: Sequence[str] | None = None,
                  parameters: Sequence[object] = ()) -> pd.DataFrame:
        """Every row (per sequence, head, map cell) of the given cells matching ``where``: a drill-down
        that opens those cells' files only."""
        return self._read([self.store.cell_path(c) for c in cells], columns, where, parameters)

    def all_rows(self, where: str = "", columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Every row of every stored cell (of every configuration) matching ``where``: for scripts
        and checks; the leaderboard reads summaries and drills down instead."""
        return self._read(self.store.cell_files(), columns, where)


def refs(cells: pd.DataFrame) -> list[CellRef]:
    """The cells named by the ``model_id, metric, cell_key`` columns of a frame."""
    return [CellRef(m, metric, k) for m, metric, k in cells[CELL_COLUMNS].drop_duplicates().itertuples(index=False)]
