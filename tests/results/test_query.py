"""DuckDB queries over the store: cells listed from summaries, drill-down per cell, unreadable files
skipped and listed (but an error that is no file's fault raised), and cells of the previous schema
still read."""

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from idsuite.results.query import ResultQuery, refs
from tests.results.conftest import cell_frame


def test_cells_lists_one_row_per_cell_with_its_provenance(store):
    for model in ("a", "b"):
        store.write(*cell_frame(model))
    store.write(*cell_frame("c", status="failed"))
    cells = ResultQuery(store).cells()
    assert cells["model_id"].tolist() == ["a", "b", "c"] and cells["ok"].tolist() == [True, True, False]
    assert cells.loc[2, "error"] == "RuntimeError: broke" and (cells["n_layers"] == 2).all()
    assert str(cells["written"].dtype).startswith("datetime64") and cells["corpus_id"].eq("lee:all").all()


def test_summary_rows_and_drill_down_read_only_what_is_asked(store):
    ref, frame = cell_frame("a")
    store.write(ref, frame)
    other_ref, _ = cell_frame("b")
    store.write(*cell_frame("b"))
    query = ResultQuery(store)
    summary = query.summary_rows([ref])
    assert len(summary) == 3 and summary["sequence"].isna().all() and set(summary["model_id"]) == {"a"}
    rows = query.cell_rows([ref], where="variant = ? AND layer = ?", parameters=["null_dim", 2], columns=["sequence", "value"])
    assert rows["sequence"].tolist() == [0, 1, 2] and list(rows.columns) == ["sequence", "value"]
    assert len(query.all_rows()) == 2 * len(frame)
    assert refs(query.cells()) == sorted([ref, other_ref], key=lambda r: r.model_id)


def test_unreadable_files_are_skipped_and_listed_not_fatal(store):
    good_ref, good = cell_frame("good")
    bad_ref, bad = cell_frame("bad")
    store.write(good_ref, good)
    store.write(bad_ref, bad)
    summary = store.summary_path(bad_ref)
    summary.write_bytes(b"not parquet at all")
    query = ResultQuery(store)
    cells = query.cells()
    assert cells["model_id"].tolist() == ["good"]
    assert [p for p, _ in query.bad_files] == [summary]
    assert len(query.cell_rows([good_ref, bad_ref])) == 2 * len(good)  # the bad model's cell itself is fine


def test_a_cell_of_the_previous_schema_still_loads(store):
    """Schema 1: no summary file, no trust_remote_code column, no schema metadata."""
    ref, frame = cell_frame("old")
    table = pa.Table.from_pandas(frame.drop(columns=["trust_remote_code"]), preserve_index=False)
    path = store.cell_path(ref)
    path.parent.mkdir(parents=True)
    pq.write_table(table, path)
    query = ResultQuery(store)
    cells = query.cells()
    assert cells["model_id"].tolist() == ["old"] and cells.loc[0, "ok"] and not cells.loc[0, "trust_remote_code"]
    summary = query.summary_rows(refs(cells))
    assert len(summary) == 3 and summary["sequence"].isna().all()


class FailsOnce:
    """A DuckDB connection whose first query fails as if interrupted (no file's fault)."""

    def __init__(self, db):
        self.db, self.failed = db, False

    def execute(self, *args):
        if not self.failed:
            self.failed = True
            raise duckdb.InterruptException("INTERRUPT Error: Interrupted!")
        return self.db.execute(*args)


def test_an_error_that_is_no_files_fault_is_raised_not_blamed_on_the_files(store):
    store.write(*cell_frame("a"))
    query = ResultQuery(store)
    query._db = FailsOnce(query._db)
    with pytest.raises(duckdb.InterruptException):
        query.cells()
    assert query.bad_files == []
