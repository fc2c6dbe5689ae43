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
