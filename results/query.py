"""Reading the store with DuckDB: Parquet files read in place, only the columns and rows asked for.

``cells()`` lists every stored cell (one row each) from the small summary files; ``summary_rows``
reads the aggregated rows of chosen cells; ``cell_rows`` drills down into the full files of
chosen cells only. A file that cannot be read, or that is not an idsuite cell (a foreign schema,
a damaged card), is skipped and listed in ``bad_files`` instead of failing the query or adding rows
(the writer quarantines it; a reader never moves files).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from idsuite.results.schema import ARROW_SCHEMA, CARD_COLUMNS, NAMES, SCHEMA_VERSION, select_list
from idsuite.results.store import CARD_KEY, CellRef, ResultStore, card_of, file_problem

CELL_COLUMNS = ["model_id", "metric", "cell_key"]
"""What names a cell in query results."""
AGGREGATED = "sequence IS NULL"
"""The rows a summary holds (true of every summary row; selects them from a cell without a summary)."""
CELL_ROWS = f"{AGGREGATED} AND head IS NULL"
"""Enough rows to know a cell: its per-layer and whole-model rows, or its one failed row (provenance
and status are the same on every row of a cell)."""


def _sql_list(paths: Sequence[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f'"{c}"' for c in names)


class ResultQuery:
    """Queries over one store. ``bad_files``: (path, reason) of every file skipped so far."""

    def __init__(self, store: ResultStore | str | Path) -> None:
        self.store = store if isinstance(store, ResultStore) else ResultStore(store)
        self.bad_files: list[tuple[Path, str]] = []
        self._db = duckdb.connect()
        self._db.execute("SET parquet_metadata_cache = true")  # footers are read once per query object
        self._current: set[Path] = set()  # files whose card says they hold every column of this schema

    def close(self) -> None:
        """Close the DuckDB connection: its worker threads end (before a fork, say); no query after."""
        self._db.close()

    def _rows_sql(self, paths: list[Path], names: list[str], where: str) -> str:
        if self._current.issuperset(paths):  # their cards said: written with every column of this schema
            source, present = f"read_parquet({_sql_list(paths)})", set(NAMES)
        else:  # older files may lack columns: read them by name, a missing one as NULL
            source = f"read_parquet({_sql_list(paths)}, union_by_name = true)"
            present = {row[0] for row in self._db.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        migrated = f"SELECT {select_list(present)} FROM {source}"  # DuckDB pushes the projection and filter down
        return f"SELECT {_quoted(names)} FROM ({migrated})" + (f" WHERE {where}" if where else "")

    def _read(self, paths: list[Path], columns: Sequence[str] | None = None, where: str = "",
              parameters: Sequence[object] = (), query: str = "SELECT * FROM rows") -> pd.DataFrame:
        """``query`` over ``rows``: the ``columns`` of the rows matching ``where`` in ``paths``, older
        files migrated by the schema. A file that cannot be read is skipped and recorded in
        ``bad_files`` (found by reading each file alone, only when the whole query fails)."""
        names = list(columns) if columns else NAMES
        paths = self._ours(paths)
        if not paths:
            self._db.register("no_rows", ARROW_SCHEMA.empty_table())
            rows = f"SELECT {_quoted(names)} FROM no_rows" + (f" WHERE {where}" if where else "")
            return self._db.execute(f"WITH rows AS ({rows}) {query}", list(parameters)).df()
        try:
            return self._db.execute(f"WITH rows AS ({self._rows_sql(paths, names, where)}) {query}", list(parameters)).df()
        except duckdb.Error:
            good = self._readable(paths, lambda path: self._db.execute(
                f"SELECT count(*) FROM ({self._rows_sql([path], names, where)})", list(parameters)))
            if len(good) == len(paths):
                raise  # not a file's fault
            return self._read(good, columns, where, parameters, query)

    def _ours(self, paths: list[Path]) -> list[Path]:
        """The ``paths`` whose footer is an idsuite cell's (``file_problem``; files whose current
        card was read already are taken as they are); the others are recorded in ``bad_files``."""
        good = []
        for path in paths:
            problem = None if path in self._current else file_problem(path)
            if problem is None:
                good.append(path)
            elif (path, problem) not in self.bad_files:
                self.bad_files.append((path, problem))
        return good

    def _readable(self, paths: list[Path], probe: Callable[[Path], object]) -> list[Path]:
        """After a query over ``paths`` failed: the paths that ``probe`` reads alone; the others are
        recorded in ``bad_files``."""
        good = []
        for path in paths:
            try:
                probe(path)
                good.append(path)
            except duckdb.Error as e:
                self.bad_files.append((path, str(e).splitlines()[0][:300]))
        return good

    def _cards(self, paths: list[Path]) -> dict[Path, dict[str, object] | None]:
        """The card in each file's footer (None for files written before cards existed), every footer
        read in one query. A file whose footer cannot be read is left out and recorded in
        ``bad_files`` (found by reading each file alone, only when the whole query fails)."""
        if not paths:
            return {}
        footers = lambda files: f"parquet_kv_metadata({_sql_list(files)})"  # noqa: E731
        try:
            found = dict(self._db.execute(f"SELECT file_name, value FROM {footers(paths)} WHERE key = ?",
                                          [CARD_KEY]).fetchall())
        except duckdb.Error:
            good = self._readable(paths, lambda path: self._db.execute(f"SELECT count(*) FROM {footers([path])}"))
            if len(good) == len(paths):
                raise  # not a file's fault
            return self._cards(good)
        cards: dict[Path, dict[str, object] | None] = {}
        for path in paths:
            try:
                cards[path] = card_of({CARD_KEY: found[str(path)]}) if str(path) in found else None
            except ValueError as e:
                self.bad_files.append((path, f"damaged card in its footer: {str(e).splitlines()[0][:200]}"))
        return cards

    def cells(self) -> pd.DataFrame:
        """One row per stored cell: ``model_id, metric, cell_key``, its provenance and model facts,
        ``written`` (UTC time of the cell, ``not_ahead``), ``ok`` (every row finished) and ``error``
        (the first).

        Read from the cards in the files' footers; cells written before cards existed are
        aggregated from their rows."""
        cards, older = [], []
        for path, card in self._cards(self.store.summary_sources()).items():
            (cards.append(card) if card is not None else older.append(path))
            if card is not None and card.get("schema_version") == SCHEMA_VERSION:
                self._current.add(path)
        columns = [*CARD_COLUMNS, "ok", "error", "written"]
        frames = [self._migrated(group, columns) for group in _by_columns(cards)]
        if older:
            per_cell = ", ".join(f'any_value("{c}") AS "{c}"' for c in CARD_COLUMNS)
            query = (f"SELECT {per_cell}, bool_and(status = 'ok') AS ok, any_value(error) AS error, "
                     "max(timestamp) AS written FROM rows GROUP BY model_id, metric, cell_key")
            frames.append(self._read(older, [*CARD_COLUMNS, "timestamp", "status", "error"], where=CELL_ROWS, query=query))
        if not frames:
            return pd.DataFrame(columns=columns)
        cells = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        cells = cells.astype({c: ARROW_SCHEMA.field(c).type.to_pandas_dtype() for c in CARD_COLUMNS
                              if ARROW_SCHEMA.field(c).type.id == pa.int64().id} | {"ok": bool}, errors="ignore")
        cells["written"] = self.not_ahead(cells, pd.to_datetime(cells["written"], utc=True, format="ISO8601"))
        return cells[[*CELL_COLUMNS, *[c for c in columns if c not in CELL_COLUMNS]]].sort_values(
            CELL_COLUMNS, ignore_index=True)

    def _migrated(self, cards: list[dict[str, object]], columns: list[str]) -> pd.DataFrame:
        """Cards that all name the same columns, as a frame of ``columns``: cards of an older schema
        get the columns they lack from the schema's ``absent`` expressions (as older files do)."""
        present = set(cards[0])
        frame = pd.DataFrame(cards)
        if present.issuperset(CARD_COLUMNS):
            return frame[columns]
        self._db.register("older_cards", frame)
        try:
            return self._db.execute(f"SELECT {select_list(present, CARD_COLUMNS)}, ok, error, written FROM older_cards").df()
        finally:
            self._db.unregister("older_cards")

    def not_ahead(self, cells: pd.DataFrame, written: pd.Series) -> pd.Series:
        """The cells' ``written`` times, each at most its cell file's modification time and at most
        now. The stamp is the writing host's clock; the modification time is the file system's
        (on a store shared over the network, its server's clock, the same for every host), so a
        host whose clock runs ahead cannot make its cells look newer than cells written after them,
        and no time read here lies in the future."""
        modified = []
        for model_id, metric, key in cells[CELL_COLUMNS].itertuples(index=False):
            try:
                modified.append(self.store.cell_path(CellRef(model_id, metric, key)).stat().st_mtime)
            except (OSError, ValueError):
                modified.append(float("nan"))
        modified = pd.to_datetime(pd.Series(modified, index=written.index), unit="s", utc=True)
        later = modified.notna() & (written.isna() | (written > modified))
        return written.where(~later, modified).clip(upper=pd.Timestamp.now(tz="UTC"))

    def summary_rows(self, cells: Iterable[CellRef], where: str = "", columns: Sequence[str] | None = None,
                     parameters: Sequence[object] = ()) -> pd.DataFrame:
        """Rows aggregated over sequences (per layer, per head, per model) of the given cells."""
        where = f"{AGGREGATED} AND ({where})" if where else AGGREGATED
        return self._read([self.store.summary_source(c) for c in cells], columns, where, parameters)

    def cell_rows(self, cells: Iterable[CellRef], where: str = "", columns: Sequence[str] | None = None,
                  parameters: Sequence[object] = ()) -> pd.DataFrame:
        """Every row (per sequence, head, map cell) of the given cells matching ``where``: a drill-down
        that opens those cells' files only."""
        return self._read([self.store.cell_path(c) for c in cells], columns, where, parameters)

    def sentences(self, cells: Iterable[CellRef]) -> pd.DataFrame:
        """(model_id, metric, cell_key, sentences): how many probe sentences each cell's numbers
        rest on (its distinct ``sequence`` values; 0 for a cell without per-sentence rows)."""
        cells = list(cells)
        query = ("SELECT model_id, metric, cell_key, count(DISTINCT sequence) AS sentences FROM rows "
                 "GROUP BY model_id, metric, cell_key")
        found = self._read([self.store.cell_path(c) for c in cells], [*CELL_COLUMNS, "sequence"], query=query)
        known = pd.DataFrame([(c.model_id, c.metric, c.key) for c in cells], columns=CELL_COLUMNS)
        out = known.merge(found, on=CELL_COLUMNS, how="left")
        return out.assign(sentences=out["sentences"].fillna(0).astype(int))

    def all_rows(self, where: str = "", columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Every row of every stored cell (of every configuration) matching ``where``: for scripts
        and checks; the leaderboard reads summaries and drills down instead."""
        return self._read(self.store.cell_files(), columns, where)


def _by_columns(cards: list[dict[str, object]]) -> list[list[dict[str, object]]]:
    """Cards grouped by the columns they name (one group per schema version that wrote them)."""
    groups: dict[frozenset[str], list[dict[str, object]]] = {}
    for card in cards:
        groups.setdefault(frozenset(card), []).append(card)
    return list(groups.values())


def refs(cells: pd.DataFrame) -> list[CellRef]:
    """The cells named by the ``model_id, metric, cell_key`` columns of a frame."""
    return [CellRef(m, metric, k) for m, metric, k in cells[CELL_COLUMNS].drop_duplicates().itertuples(index=False)]
