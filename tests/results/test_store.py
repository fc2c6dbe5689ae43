"""The store writes whole files or none, keeps summaries beside cells, maps ids to folders one to
one, quarantines unreadable cells and cleans up after killed writers."""

import os
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from idsuite.results.schema import SCHEMA_VERSION
from idsuite.results.store import ResultStore, model_folder, model_id_of
from idsuite.suite.specs.rows import ROW_COLUMNS
from tests.results.conftest import cell_frame


@given(st.text(min_size=1, max_size=40))
def test_model_folders_are_injective_and_never_special(model_id):
    folder = model_folder(model_id)
    assert model_id_of(folder) == model_id
    assert folder not in (".", "..") and not folder.startswith(".") and "/" not in folder and "\0" not in folder


def test_constant_columns_given_apart_give_the_same_file_as_columns_of_the_frame(tmp_path):
    # the runner hands provenance and facts as constants (Arrow columns added after sorting); the file,
    # its summary and its footer card are those of the same columns written as part of the frame, and a
    # constant that the rows also hold replaces it
    ref, frame = cell_frame(sequences=4)
    shuffled = frame.sample(frac=1, random_state=0)
    constant = [c for c in frame.columns if c not in ROW_COLUMNS or c == "metric"]
    apart, together = ResultStore(tmp_path / "apart"), ResultStore(tmp_path / "together")
    values = {c: frame[c].iloc[0] for c in constant}
    values = {c: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for c, v in values.items()}
    apart.write(ref, shuffled[[c for c in frame.columns if c not in constant]].assign(metric="stale"), values)
    together.write(ref, shuffled)
    for path in (ResultStore.cell_path, ResultStore.summary_path):
        a, b = pq.read_table(path(apart, ref)), pq.read_table(path(together, ref))
        assert a.equals(b) and a.schema.metadata == b.schema.metadata
    assert pq.read_table(apart.cell_path(ref)).column("metric").unique().to_pylist() == ["rank_deficiency"]


def test_ids_that_used_to_collide_get_their_own_folders():
    assert len({model_folder(i) for i in ("org/model", "org_model", "org model", "org%2Fmodel")}) == 4
    with pytest.raises(ValueError):
        model_folder("")


def test_write_puts_cell_and_summary_in_place_and_nothing_in_staging(store):
    ref, frame = cell_frame()
    path = store.write(ref, frame)
    assert path == store.cell_path(ref) and path.parent.name == "m"
    cell, summary = pq.read_table(path), pq.read_table(store.summary_path(ref))
    assert cell.num_rows == len(frame) and summary.num_rows == 3  # two per-layer rows and the whole-model row
    assert summary.column("sequence").null_count == 3
    assert cell.schema.metadata[b"idsuite_schema"] == str(SCHEMA_VERSION).encode()
    assert list(store.staging.iterdir()) == []
    assert store.state(ref) == "ok" and store.is_done(ref)
    failed_ref, failed = cell_frame("f", status="failed")
    store.write(failed_ref, failed)
    assert store.state(failed_ref) == "failed" and not store.is_done(failed_ref)


def test_an_unreadable_cell_is_quarantined_with_its_reason_and_then_missing(store):
    ref, frame = cell_frame()
    path = store.write(ref, frame)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated
    assert store.state(ref) == "missing" and not path.exists() and not store.summary_path(ref).exists()
    moved = sorted(store.quarantined.iterdir())
    assert [p.suffix for p in moved] == [".parquet", ".reason", ".parquet"]
    assert "unreadable cell" in next(p for p in moved if p.suffix == ".reason").read_text()


def test_a_lost_summary_is_rebuilt_from_its_finished_cell(store):
    ref, frame = cell_frame()
    store.write(ref, frame)
    store.summary_path(ref).unlink()
    assert store.summary_source(ref) == store.cell_path(ref)  # read from the cell meanwhile
    assert store.state(ref) == "ok" and pq.read_table(store.summary_path(ref)).num_rows == 3


def test_staging_files_of_dead_writers_are_removed_and_live_ones_kept(store):
    store.staging.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = os.uname().nodename
    gone = store.staging / f"{host}-{int(dead.stdout)}-abc.part"
    alive = store.staging / f"{host}-{os.getpid()}-def.part"
    foreign = store.staging / "elsewhere-12-ghi.part"
    for p in (gone, alive, foreign):
        p.write_bytes(b"partial")
    assert store.clean_staging() == [gone]
    os.utime(foreign, (0, 0))  # another host's file, a day old: stale
    assert store.clean_staging() == [foreign] and alive.exists()


def test_writing_fails_cleanly_when_the_disk_is_full(store, monkeypatch):
    first_ref, first = cell_frame("a")
    store.write(first_ref, first)
    ref, frame = cell_frame("b")

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full)
    with pytest.raises(OSError, match="No space left"):
        store.write(ref, frame)
    assert not store.cell_path(ref).exists() and list(store.staging.iterdir()) == []
    assert store.is_done(first_ref)  # what was written before is intact


def test_foreign_files_are_named_but_a_newer_schemas_cell_is_left_alone(store, tmp_path):
    import pyarrow as pa

    from idsuite.results.schema import SCHEMA_VERSION
    from idsuite.results.store import SCHEMA_KEY, file_problem

    ref, frame = cell_frame()
    table = pq.read_table(store.write(ref, frame))
    newer = table.append_column("new_column", pa.array([1.0] * table.num_rows))
    for version, problem in ((str(SCHEMA_VERSION).encode(), "not an idsuite cell: column 'new_column' is not in the results schema"),
                             (str(SCHEMA_VERSION + 1).encode(), None)):  # a newer idsuite's cell: never quarantined by this one
        pq.write_table(newer.replace_schema_metadata(newer.schema.metadata | {SCHEMA_KEY: version}), tmp_path / "f.parquet")
        assert file_problem(tmp_path / "f.parquet") == problem
    (tmp_path / "folder.parquet").mkdir()
    assert file_problem(tmp_path / "folder.parquet") == "not a regular file"
    (tmp_path / "text.parquet").write_text("not parquet")
    assert file_problem(tmp_path / "text.parquet").startswith("unreadable footer: ArrowInvalid")
