"""The one schema: every derived column list comes from it; tables are conformed to it; older files
read through it."""

import duckdb
import pyarrow as pa
import pytest

from idsuite.results import schema
from idsuite.suite.specs.rows import ROW_COLUMNS


def test_derived_lists_come_from_the_declaration():
    assert schema.NAMES[: len(ROW_COLUMNS)] == list(ROW_COLUMNS)
    assert set(schema.SETTING_COLUMNS) == {"corpus_id", "corpus_hash", "metric_config", "seed", "max_tokens"}
    assert "dtype" in schema.KEY_COLUMNS and "dtype" not in schema.SETTING_COLUMNS  # a re-run supersedes, not splits
    assert "timestamp" not in schema.KEY_COLUMNS and "run_id" not in schema.KEY_COLUMNS
    assert schema.SIZE_FACTS == ["n_params", "n_layers", "n_heads", "n_kv_heads", "d_head", "d_model"]
    assert len(set(schema.NAMES)) == len(schema.NAMES)


def test_conform_orders_types_and_fills_and_refuses_unknown_columns():
    table = pa.table({"value": [1, 2], "metric": ["a", "b"], "layer": pa.array([1, None], pa.int32())})
    out = schema.conform(table)
    assert out.schema == schema.ARROW_SCHEMA
    assert out.column("value").to_pylist() == [1.0, 2.0] and out.column("layer").to_pylist() == [1, None]
    assert out.column("trust_remote_code").null_count == 2
    with pytest.raises(ValueError, match="not in the results schema: colour"):
        schema.conform(table.append_column("colour", pa.array(["red", "blue"])))


def test_select_list_reads_a_missing_column_as_its_absent_value(tmp_path):
    old = pa.table({"metric": ["rank_deficiency"], "value": [0.5]})  # a file from before most columns
    db = duckdb.connect()
    db.register("old", old)
    row = db.execute(f"SELECT {schema.select_list({'metric', 'value'})} FROM old").df().iloc[0]
    assert row["metric"] == "rank_deficiency" and row["value"] == 0.5
    assert not bool(row["trust_remote_code"])  # absent: FALSE (NA would raise)
    assert row.isna()["layer"] and row.isna()["model_id"]


def _schema_2_cell(store, model_id: str, fingerprint: str) -> None:
    """A cell as schema 2 wrote it: no ``model_commit`` column, none in its card."""
    import json

    import pyarrow.parquet as pq

    from idsuite.results.store import CARD_KEY, SCHEMA_KEY, cell_card
    from tests.results.conftest import cell_frame

    ref, frame = cell_frame(model_id, model_fingerprint=fingerprint)
    frame["schema_version"] = 2
    table = schema.conform(pa.Table.from_pandas(frame.drop(columns="model_commit"), preserve_index=False))
    card = {k: v for k, v in cell_card(table).items() if k != "model_commit"}
    table = table.drop_columns("model_commit")
    table = table.replace_schema_metadata({SCHEMA_KEY: b"2", CARD_KEY: json.dumps(card).encode()})
    for path in (store.cell_path(ref), store.summary_path(ref)):
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)


def test_older_hub_cells_pinned_to_a_sha_get_it_as_their_commit(store):
    """Migration of ``model_commit``: a schema-2 hub cell pinned by sha reads that sha, one of a
    branch (never resolved) and one of a folder read NULL; alike from cards and from rows."""
    from idsuite.results.query import ResultQuery

    sha = "0123456789abcdef0123456789abcdef01234567"
    _schema_2_cell(store, "pinned", f"hub:org/m@{sha}")
    _schema_2_cell(store, "branch", "hub:org/m@main")
    _schema_2_cell(store, "folder", "local:sha256=0123456789abcdef")
    query = ResultQuery(store)
    cells = query.cells().set_index("model_id")
    assert cells.loc["pinned", "model_commit"] == sha
    assert cells.isna().loc["branch", "model_commit"] and cells.isna().loc["folder", "model_commit"]
    rows = query.all_rows(columns=["model_id", "model_commit"]).drop_duplicates().set_index("model_id")
    assert rows.loc["pinned", "model_commit"] == sha and rows.isna().loc["branch", "model_commit"]
def test_a_foreign_schema_is_named_in_one_line():
    from idsuite.results.schema import schema_problem

    ours = pa.schema([("model_id", pa.string()), ("metric", pa.string()), ("cell_key", pa.string()),
                      ("status", pa.string()), ("layer", pa.float64()), ("value", pa.float64())])
    assert schema_problem(ours) is None  # an older cell: some columns, ints that pandas wrote as floats
    assert schema_problem(pa.schema([("a", pa.int64())])) == "not an idsuite cell: column 'a' is not in the results schema"
    assert schema_problem(ours.remove(0)) == "not an idsuite cell: no column 'model_id'"
    wrong = ours.set(4, pa.field("layer", pa.string()))
    assert schema_problem(wrong) == "not an idsuite cell: column 'layer' holds string, not int64"
