"""The Parquet store: one file per result cell and a small summary file beside it.

``<root>/cells/<model>/<metric>-<key>.parquet`` holds every row of a cell;
``<root>/summaries/<model>/<metric>-<key>.parquet`` its rows aggregated over sequences (per layer,
per head, per model), which the main table and the curves read without touching per-sequence rows.
``<model>`` is the model id percent-encoded (``model_folder``), so different ids never share a folder.

Safety lives here, not in the callers: a file is written under ``staging/`` (which no reader
looks at), fsynced, renamed into place and its folder fsynced, so a reader sees a whole file or
none; a cell is written before its summary, and a summary without its cell is never read. An
unreadable cell is moved to ``quarantine/`` with the reason beside it (never deleted) so that it is
recomputed; staging files left by a killed writer are removed once their process is gone. Anything
else found where a cell, a summary or a staging file belongs (a folder, a file of another program,
valid Parquet of a foreign schema, a damaged footer) is quarantined the same way, so that no single
file can stop a run or a reader.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from idsuite.results.schema import ARROW_TYPES, BY_NAME, CARD_COLUMNS, SCHEMA_VERSION, conform, schema_problem

CellState = Literal["missing", "ok", "failed"]
ROW_GROUP_ROWS = 65_536
"""Rows per Parquet row group of a cell: rows are sorted by (variant, layer, head), so a drill-down
(one head's example map, one variant's per-sequence rows) skips the other groups by their statistics."""
STALE_STAGING_SECONDS = 24 * 3600
"""A staging file from another host (whose process cannot be checked) is stale after this long."""
SORT_COLUMNS = ["variant", "layer", "head", "sequence", "query", "key"]


SCHEMA_KEY, CARD_KEY = b"idsuite_schema", b"idsuite_cell"
"""Keys of the footer metadata: the schema version, and the cell's card (JSON)."""
NAME_MAX = 255
"""Longest file or folder name (bytes) of the file systems a store lives on (ext4, xfs, btrfs, APFS,
NTFS): a model's folder name must fit (``idsuite.runners.models.zoo`` checks every id)."""


def card_of(metadata: dict[bytes, bytes] | None) -> dict[str, object] | None:
    """The card in a file's footer metadata; None when there is none (a file written before cards).
    A card that is not UTF-8 JSON of a mapping raises ``ValueError`` (a damaged footer)."""
    if not metadata or CARD_KEY not in metadata:
        return None
    card = json.loads(metadata[CARD_KEY].decode("utf-8"))
    if not isinstance(card, dict) or not all(isinstance(card.get(c), str) for c in ("model_id", "metric", "cell_key")):
        raise ValueError("the card in its footer is not an idsuite cell's")
    return card


def file_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable idsuite cell or summary (one line), or None: it must be a
    regular file with a Parquet footer of the declared columns (``schema_problem``; a cell of a
    newer schema version may have more) and, if it has a card, a well-formed one. Only the footer
    is read."""
    if not path.is_file():
        return "not a regular file"
    try:
        schema = pq.read_schema(path)
        card_of(schema.metadata)
    except (OSError, pa.ArrowException, ValueError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        return f"unreadable footer: {type(e).__name__}" + (f": {first}" if first else "")
    version = (schema.metadata or {}).get(SCHEMA_KEY, b"")
    if version.isdigit() and int(version) > SCHEMA_VERSION:  # a newer idsuite's cell: its new columns are not
        return None  # ours to judge (readers read the columns they know), and it is never quarantined
    return schema_problem(schema)


def cell_card(table: pa.Table) -> dict[str, object]:
    """What is the same on every row of a cell (``CARD_COLUMNS``, first non-null value), whether it
    finished (``ok``: every row's status is ok), its first ``error`` and when it was ``written``."""
    card = {}
    for name in CARD_COLUMNS:
        column = table.column(name).drop_null()
        card[name] = column[0].as_py() if len(column) else None
    ok = pc.fill_null(pc.equal(table.column("status"), "ok"), False)  # a null status is not ok
    errors = table.column("error").drop_null()
    card |= {"ok": len(table) > 0 and pc.all(ok).as_py(), "error": errors[0].as_py() if len(errors) else None,
             "written": pc.max(table.column("timestamp")).as_py()}
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
        """The Parquet files one level below ``tree`` (a folder per model); a folder that cannot
        be listed is left out (the writer meets it when it writes there)."""
        try:
            folders = sorted(tree.iterdir()) if tree.is_dir() else []
        except OSError:
            return
        for folder in folders:
            try:
                if folder.is_dir():
                    yield from sorted(p for p in folder.iterdir()
                                      if p.suffix == ".parquet" and not p.name.startswith(".") and p.is_file())
            except OSError:
                continue

    def cell_files(self) -> list[Path]:
        return list(self._files(self.cells))

    def summary_source(self, ref: CellRef) -> Path:
        """Where a cell's aggregated rows are read from: its summary, or for a cell written before
        summaries existed (schema 1) the cell itself (its rows with no ``sequence``)."""
        summary = self.summary_path(ref)
        return summary if summary.is_file() else self.cell_path(ref)

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

    def write(self, ref: CellRef, frame: pd.DataFrame, constants: Mapping[str, Any] | None = None) -> Path:
        """Write a cell (every row of ``frame``, each with the ``constants``: columns of one value,
        such as the provenance) and then its summary (rows with no ``sequence``), each atomically;
        both carry the cell's card in their footer. The constants join as Arrow columns after the
        rows are sorted, so a cell of millions of rows (example maps) is not sorted and copied
        column by column for values that never change."""
        rows = frame.sort_values([c for c in SORT_COLUMNS if c in frame], na_position="first", kind="stable")
        table = pa.Table.from_pandas(rows, preserve_index=False)
        for name, value in (constants or {}).items():  # one that the rows hold too is replaced
            column = pa.repeat(pa.scalar(value, ARROW_TYPES[BY_NAME[name].type]), len(table))
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, column) if index >= 0 else table.append_column(name, column)
        table = conform(table)
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
        """Whether a cell is there and finished. A cell that is unreadable or not an idsuite cell
        (``file_problem``) is quarantined (and so ``missing``: it will be recomputed); a missing or
        broken summary of a readable cell is rebuilt from the cell, as the cell itself is finished
        (if it cannot be written, a full disk say, readers read the cell itself meanwhile)."""
        path = self.cell_path(ref)
        if not os.path.lexists(path):
            return "missing"
        problem = file_problem(path)
        if problem is None:
            try:
                status = pq.read_table(path, columns=["status"]).column("status").to_pylist()
            except (OSError, pa.ArrowException) as e:
                problem = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if problem is not None:
            self.quarantine(path, f"unreadable cell: {problem}")
            return "missing"
        summary = self.summary_path(ref)
        if file_problem(summary) is not None:
            if os.path.lexists(summary):
                self.quarantine(summary, f"unreadable summary: {file_problem(summary)}", summary=False)
            cell = pq.read_table(path)
            with contextlib.suppress(OSError):
                self._atomic_write(self._summary_of(cell).replace_schema_metadata(cell.schema.metadata), summary)
        return "ok" if status and all(s == "ok" for s in status) else "failed"

    def is_done(self, ref: CellRef) -> bool:
        """True when the cell exists and finished (a failed cell is retried)."""
        return self.state(ref) == "ok"

    def quarantine(self, path: Path, reason: str, summary: bool = True) -> Path:
        """Move an unreadable file (a cell with its summary unless ``summary`` is False, a summary,
        anything in staging) aside, with the reason and where it was in a ``.reason`` file. Its new
        name is the time and a hash of its old path (an id's folder may fill a whole name)."""
        self.quarantined.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
        target = self.quarantined / f"{stamp}-{digest}-{uuid.uuid4().hex[:6]}{path.suffix}"
        os.replace(path, target)
        target.with_suffix(".reason").write_text(f"{path}: {reason}\n")
        if summary and path.parent.parent == self.cells:
            beside = self.summary_path(self.ref_of(path))
            if os.path.lexists(beside):
                os.replace(beside, target.with_suffix(".summary.parquet"))
        return target

    def sweep(self, model_id: str) -> list[Path]:
        """Quarantine every file in a model's cell and summary folders that is not a readable idsuite
        cell or summary (``file_problem``: a foreign schema, a damaged footer, a folder); return the
        paths moved. A run sweeps the folders of the models it runs before it reads them."""
        moved = []
        for tree in (self.cells, self.summaries):
            folder = tree / model_folder(model_id)
            for path in sorted(folder.iterdir()) if folder.is_dir() else []:
                problem = "not a Parquet file" if path.suffix != ".parquet" else file_problem(path)
                if problem is not None and not path.name.startswith("."):
                    self.quarantine(path, f"unreadable {'cell' if tree == self.cells else 'summary'}: {problem}",
                                    summary=False)
                    moved.append(path)
        return moved

    def clean_staging(self) -> list[Path]:
        """Remove staging files whose writer is gone (this host: its process ended; another host:
        older than ``STALE_STAGING_SECONDS``); return them. Anything that is not a regular file
        (a folder, say) was not put there by a writer: it is quarantined."""
        removed: list[Path] = []
        if not self.staging.is_dir():
            return removed
        host = socket.gethostname()
        for path in self.staging.iterdir():
            if path.is_symlink() or not path.is_file():
                self.quarantine(path, "not a file in progress (staging holds only the files writers are writing)")
                removed.append(path)
                continue
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
