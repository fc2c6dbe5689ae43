"""The Parquet store: one file per result cell, written atomically, read back as one long table.

A cell is (model weights, corpus, metric + version + config, seed, library versions); its key is a
hash of those, so bumping a metric's version or changing its config makes a new cell.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_VERSION = 1


def cell_key(parts: dict[str, object]) -> str:
    """Content key of a result cell: sha256 of its identifying parts, as sorted JSON."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


class ResultStore:
    """``<root>/cells/<model>/<metric>-<key>.parquet``; the status column says ok or failed."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def cell_path(self, model_id: str, metric: str, key: str) -> Path:
        return self.root / "cells" / slug(model_id) / f"{metric}-{key}.parquet"

    def is_done(self, model_id: str, metric: str, key: str) -> bool:
        """True when the cell exists and finished (a failed cell is retried)."""
        path = self.cell_path(model_id, metric, key)
        if not path.exists():
            return False
        status = pq.read_table(path, columns=["status"]).column("status").to_pylist()
        return bool(status) and all(s == "ok" for s in status)

    def write(self, model_id: str, metric: str, key: str, frame: pd.DataFrame) -> Path:
        """Write a cell atomically (temp file in the same folder, then rename)."""
        path = self.cell_path(model_id, metric, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"idsuite_schema": str(SCHEMA_VERSION).encode()})
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".parquet")
        os.close(fd)
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    def read(self) -> pd.DataFrame:
        """Every cell as one long-format table (empty if nothing was written yet)."""
        files = sorted((self.root / "cells").glob("*/*.parquet"))
        if not files:
            return pd.DataFrame()
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
