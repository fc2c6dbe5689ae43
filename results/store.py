"""The Parquet store: one file per result cell and a small summary file beside it.

``<root>/cells/<model>/<metric>-<key>.parquet`` holds every row of a cell;
``<root>/summaries/<model>/<metric>-<key>.parquet`` its rows aggregated over sequences (per layer,
per head, per model), which the main table and the curves read without touching per-sequence rows.
``<model>`` is the model id percent-encoded (``model_folder``), so different ids never share a folder.

Safety lives here, not in the callers: a file is written under ``staging/`` (which no reader
looks at), fsynced, renamed into place and its folder fsynced, so a reader sees a whole file or
none; a cell is written before its summary, and a summary without its cell is never read. An
unreadable cell is moved to ``quarantine/`` with the reason beside it (never deleted) so that it is
recomputed; staging files left by a killed writer are removed once their process is gone.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from idsuite.results.schema import CARD_COLUMNS, SCHEMA_VERSION, conform

CellState = Literal["missing", "ok", "failed"]
ROW_GROUP_ROWS = 65_536
"""Rows per Parquet row group of a cell: rows are sorted by (variant, layer, head), so a drill-down
(one head's example map, one variant's per-sequence rows) skips the other groups by their statistics."""
STALE_STAGING_SECONDS = 24 * 3600
"""A staging file from another host (whose process cannot be checked) is stale after this long."""
SORT_COLUMNS = ["variant", "layer", "head", "sequence", "query", "key"]


SCHEMA_KEY, CARD_KEY = b"idsuite_schema", b"idsuite_cell"
"""Keys of the footer metadata: the schema version, and the cell's card (JSON)."""


def cell_card(table: pa.Table) -> dict[str, object]:
    """What is the same on every row of a cell (``CARD_COLUMNS``, first non-null value), whether it
    finished (``ok``: every row's status is ok), its first ``error`` and when it was ``written``."""
    card = {}
    for name in CARD_COLUMNS:
        column = table.column(name).drop_null()
        card[name] = column[0].as_py() if len(column) else None
    status = table.column("status").to_pylist()
    errors = table.column("error").drop_null()
    stamps = table.column("timestamp").drop_null()
    card |= {"ok": bool(status) and all(s == "ok" for s in status), "error": errors[0].as_py() if len(errors) else None,
             "written": max(stamps.to_pylist()) if len(stamps) else None}
    return card


def model_folder(model_id: str) -> str:
    """The folder name of a model id: percent-encoded (letters, digits and ``-_.~`` kept, a leading
    dot encoded), so the mapping is injective and no id can name ``.``, ``..`` or a hidden folder."""
    if not model_id:
        raise ValueError("a model id must not be empty")
    encoded = urllib.parse.quote(model_id, safe="-_.~")
    return "%2E" + encoded[1:] if encoded.startswith(".") else encoded


def model_id_of(folder: str) -> str:
    return urllib.parse.unquote(folder)


@dataclass(frozen=True)
class CellRef:
    """Where a cell lives: its model id, metric and key."""

    model_id: str
    metric: str
    key: str


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def process_alive(pid: int) -> bool:
    """Whether a process of this host with ``pid`` runs (or exists under another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ResultStore:
    """Cells and their summaries under ``root``; ``write`` is atomic and durable."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.cells = self.root / "cells"
        self.summaries = self.root / "summaries"
        self.staging = self.root / "staging"
        self.quarantined = self.root / "quarantine"

    # -- paths -----------------------------------------------------------------------------------
    def cell_path(self, ref: CellRef) -> Path:
        return self.cells / model_folder(ref.model_id) / f"{ref.metric}-{ref.key}.parquet"

    def summary_path(self, ref: CellRef) -> Path:
        return self.summaries / model_folder(ref.model_id) / f"{ref.metric}-{ref.key}.parquet"

    @staticmethod
    def ref_of(path: Path) -> CellRef:
        """The cell a cell or summary file belongs to, from its path."""
        metric, _, key = path.stem.rpartition("-")
        return CellRef(model_id_of(path.parent.name), metric, key)

    def _files(self, tree: Path) -> Iterator[Path]:
        if not tree.is_dir():
            return
        for folder in sorted(tree.iterdir()):
            if folder.is_dir():
                yield from sorted(p for p in folder.iterdir() if p.suffix == ".parquet" and not p.name.startswith("."))

    def cell_files(self) -> list[Path]:
        return list(self._files(self.cells))

    def summary_source(self, ref: CellRef) -> Path:
        """Where a cell's aggregated rows are read from: its summary, or for a cell written before
        summaries existed (schema 1) the cell itself (its rows with no ``sequence``)."""
        summary = self.summary_path(ref)
        return summary if summary.exists() else self.cell_path(ref)

    def summary_sources(self) -> list[Path]:
        """``summary_source`` of every stored cell (a summary without its cell is never read)."""
        return [self.summary_source(self.ref_of(p)) for p in self.cell_files()]

    # -- writing ---------------------------------------------------------------------------------
    def _atomic_write(self, table: pa.Table, path: Path, row_group_size: int | None = None) -> None:
        self.staging.mkdir(parents=True, exist_ok=True)
        tmp = self.staging / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}.part"
        try:
            with tmp.open("wb") as fh:
                pq.write_table(table, fh, row_group_size=row_group_size)
                fh.flush()
                os.fsync(fh.fileno())
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, path)
            _fsync_folder(path.parent)
        finally:
            tmp.unlink(missing_ok=True)

    def write(self, ref: CellRef, frame: pd.DataFrame) -> Path:
        """Write a cell (every row) and then its summary (rows with no ``sequence``), each atomically;
        both carry the cell's card in their footer."""
        rows = frame.sort_values([c for c in SORT_COLUMNS if c in frame], na_position="first", kind="stable")
        table = conform(pa.Table.from_pandas(rows, preserve_index=False))
        metadata = {SCHEMA_KEY: str(SCHEMA_VERSION).encode(), CARD_KEY: json.dumps(cell_card(table)).encode()}
        table = table.replace_schema_metadata(metadata)
        self._atomic_write(table, self.cell_path(ref), ROW_GROUP_ROWS)
        self._atomic_write(self._summary_of(table), self.summary_path(ref))
        return self.cell_path(ref)

    @staticmethod
    def _summary_of(table: pa.Table) -> pa.Table:
        return table.filter(pc.is_null(table.column("sequence")))

    # -- reading one cell ------------------------------------------------------------------------
    def state(self, ref: CellRef) -> CellState:
        """Whether a cell is there and finished. An unreadable cell is quarantined (and so
        ``missing``: it will be recomputed); a missing or unreadable summary of a readable cell is
        rebuilt from the cell, as the cell itself is finished."""
        path = self.cell_path(ref)
        if not path.exists():
            return "missing"
        try:
            status = pq.read_table(path, columns=["status"]).column("status").to_pylist()
        except (OSError, pa.ArrowException) as e:
            self.quarantine(path, f"unreadable cell: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            return "missing"
        summary = self.summary_path(ref)
        try:
            pq.read_metadata(summary)
        except (OSError, pa.ArrowException):
            cell = pq.read_table(path)
            self._atomic_write(self._summary_of(cell).replace_schema_metadata(cell.schema.metadata), summary)
        return "ok" if status and all(s == "ok" for s in status) else "failed"

    def is_done(self, ref: CellRef) -> bool:
        """True when the cell exists and finished (a failed cell is retried)."""
        return self.state(ref) == "ok"

    def quarantine(self, path: Path, reason: str) -> Path:
        """Move an unreadable cell (and its summary) aside, with the reason in a ``.reason`` file."""
        self.quarantined.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        ref = self.ref_of(path)
        target = self.quarantined / f"{stamp}-{model_folder(ref.model_id)}-{path.name}"
        os.replace(path, target)
        target.with_suffix(".reason").write_text(reason + "\n")
        summary = self.summary_path(ref)
        if summary.exists():
            os.replace(summary, target.with_suffix(".summary.parquet"))
        return target

    def clean_staging(self) -> list[Path]:
        """Remove staging files whose writer is gone (this host: its process ended; another host:
        older than ``STALE_STAGING_SECONDS``); return them."""
        removed = []
        if not self.staging.is_dir():
            return removed
        host = socket.gethostname()
        for path in self.staging.iterdir():
            owner, _, rest = path.name.rpartition("-")[0].rpartition("-")
            try:
                pid = int(rest)
            except ValueError:
                pid = -1
            local = owner == host and pid > 0
            stale = (not process_alive(pid)) if local else time.time() - path.stat().st_mtime > STALE_STAGING_SECONDS
            if stale:
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed
