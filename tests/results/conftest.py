"""Cells built by hand (no model): rows of a metric with full provenance, as the runner writes them."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from idsuite.results.identity import cell_key
from idsuite.results.schema import KEY_COLUMNS, SCHEMA_VERSION
from idsuite.results.store import CellRef, ResultStore
from idsuite.suite.specs import SPECS


def identity(model_id: str = "m", metric: str = "rank_deficiency", **changes) -> dict[str, object]:
    base = {"model_fingerprint": f"local:sha256={model_id}", "model_commit": None, "trust_remote_code": False, "corpus_hash": "c0ffee",
            "metric": metric, "metric_version": SPECS.get(metric).version, "metric_config": json.dumps({"compute_dtype": "float64"}),
            "seed": 0, "max_tokens": 128, "dtype": "float32", "suite_version": "0.1.0", "torch_version": "2.13.0",
            "transformers_version": "5.0"}
    assert set(base) == set(KEY_COLUMNS)
    return base | changes


def cell_frame(model_id: str = "m", metric: str = "rank_deficiency", layers: int = 2, sequences: int = 3,
               timestamp: str = "2026-12-01T00:00:00.000000+00:00", status: str = "ok", **changes) -> tuple[CellRef, pd.DataFrame]:
    """A cell with per-sequence rows (variant ``null_dim``) and per-layer aggregates
    (``nonidentifiable_share`` = layer / 10) and a whole-model row."""
    ident = identity(model_id, metric, **changes)
    key = cell_key(ident)
    rows = []
    for layer in range(1, layers + 1):
        rows += [{"variant": "null_dim", "layer": layer, "head": 0, "sequence": s, "value": float(s)} for s in range(sequences)]
        rows.append({"variant": "nonidentifiable_share", "layer": layer, "value": layer / 10})
    rows.append({"variant": "nonidentifiable_share", "value": 0.15})
    frame = pd.DataFrame(rows).assign(
        **ident, schema_version=SCHEMA_VERSION, run_id="r", cell_key=key, model_id=model_id, model_source="local",
        is_control=False, control_of=None, corpus_id="lee:all", device="cpu", batch_size=16, timestamp=timestamp,
        n_layers=layers, status=status, error=None if status == "ok" else "RuntimeError: broke")
    return CellRef(model_id, metric, key), frame


@pytest.fixture
def store(tmp_path) -> ResultStore:
    return ResultStore(tmp_path / "store")
