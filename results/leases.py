"""Leases on cells: who is computing a cell, until when (``<root>/leases/<model>/<metric>-<key>.lease``).

A run takes the lease of each cell it is about to compute, so that concurrent runs and distributed
workers on one store split the work instead of doubling it. A lease is a small JSON file holding its
owner, a random token, its host and process, and its expiry, created atomically (``O_CREAT |
O_EXCL``, which network file systems honour; a file left half written by a killed creator expires
after a short grace). The holder renews it while it works; a lease whose holder died expires and can
be taken over: the expired file is renamed away first (only one taker's rename succeeds), and the
taker checks that what it moved is the expired lease it read. A run's own lease (the same owner,
e.g. a retried task of the same run) is taken back at once, and so is the lease of a process on this
host that no longer runs (a killed run restarted on the same machine).

Times in a lease cannot run ahead of now: no holder renews for longer than ``MAX_TTL`` seconds, so
a lease that expires further ahead than that (written by a host whose clock runs ahead, or forged)
does not count, and its cell is taken over. A lease that cannot be renewed or released (a read-only
or full store) is left to expire.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from idsuite.results.store import CellRef, model_folder, process_alive

DEFAULT_TTL = 300.0
"""Seconds a lease lives unless renewed; the holder renews every third of it."""
MAX_TTL = 3600.0
"""The longest a lease may live without renewal (``RunConfig.lease_ttl`` is at most this); a lease
expiring further ahead than ``MAX_TTL + CLOCK_SLACK`` seconds from now does not count."""
CLOCK_SLACK = 60.0
"""Seconds the clocks of hosts sharing a store may disagree before their leases are distrusted."""
UNREADABLE_GRACE = 5.0
"""Seconds a lease file that does not parse still counts as held after it was last written."""


@dataclass(frozen=True)
class Lease:
    """``owner``: who holds it (a run id); ``token``: this holder's; ``expires``: Unix time."""

    owner: str
    token: str
    expires: float
    host: str = ""
    pid: int = 0

    def describe(self) -> str:
        left = max(0.0, self.expires - time.time())
        return f"{self.owner} ({self.host}, pid {self.pid}; {left:.0f} s left)"

    def live(self) -> bool:
        """Not expired, not dated further ahead than any holder may renew (``MAX_TTL``), and (on
        this host, where it can be checked) its process still runs."""
        now = time.time()
        if not now < self.expires <= now + MAX_TTL + CLOCK_SLACK:
            return False
        return self.host != socket.gethostname() or self.pid <= 0 or process_alive(self.pid)


class Leases:
    """The leases of one store, taken by ``owner`` for ``ttl`` seconds at a time."""

    def __init__(self, root: str | Path, owner: str, ttl: float = DEFAULT_TTL) -> None:
        self.root = Path(root) / "leases"
        self.owner = owner
        self.ttl = ttl
        self.held: dict[CellRef, Lease] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def path(self, ref: CellRef) -> Path:
        return self.root / model_folder(ref.model_id) / f"{ref.metric}-{ref.key}.lease"

    def _new(self) -> Lease:
        return Lease(self.owner, uuid.uuid4().hex, time.time() + self.ttl, socket.gethostname(), os.getpid())

    @staticmethod
    def read(path: Path) -> Lease | None:
        """The lease in ``path``; None if there is none. A file that does not parse (damaged on disk)
        is the lease of an unknown owner that expires ``UNREADABLE_GRACE`` seconds after the file
        was last written, so that a broken file never blocks its cell for good."""
        try:
            lease = Lease(**json.loads(path.read_text()))
            if not isinstance(lease.expires, int | float) or not isinstance(lease.pid, int):
                raise TypeError("not a lease")
            return lease
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError):  # damaged, or not a file at all
            try:
                return Lease("?", "?", path.stat().st_mtime + UNREADABLE_GRACE)
            except FileNotFoundError:
                return None

    def holder(self, ref: CellRef) -> Lease | None:
        """The live lease on a cell, if any (expired leases and those of dead local processes do not count)."""
        lease = self.read(self.path(ref))
        return lease if lease is not None and lease.live() else None

    def _create(self, path: Path, lease: Lease) -> bool:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            json.dump(lease.__dict__, fh)
            fh.flush()
            os.fsync(fh.fileno())
        return True

    def _replace(self, path: Path, lease: Lease) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        try:
            tmp.write_text(json.dumps(lease.__dict__))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def acquire(self, ref: CellRef) -> bool:
        """Take the lease of a cell: True when this owner holds it now. Interrupted half way (a
        Ctrl-C), it removes the lease it had written before it lets the interrupt on."""
        path, lease = self.path(ref), self._new()
        try:
            return self._acquire(ref, path, lease)
        except BaseException:
            current = self.read(path)
            if current is not None and current.token == lease.token:
                path.unlink(missing_ok=True)
            raise

    def _acquire(self, ref: CellRef, path: Path, lease: Lease) -> bool:
        for _ in range(3):
            if self._create(path, lease):
                break
            current = self.read(path)
            if current is None:
                continue  # released meanwhile: try to create again
            if current.owner == self.owner:  # our own (a retried task of this run): take it back
                self._replace(path, lease)
                break
            if current.live():
                return False
            tomb = path.with_name(f".{path.name}.expired-{uuid.uuid4().hex}")
            try:
                os.rename(path, tomb)
            except FileNotFoundError:
                continue  # someone else moved it first
            moved = self.read(tomb)
            if moved is not None and moved.token != current.token:  # we moved a fresh lease: put it back
                try:
                    os.link(tomb, path)
                except FileExistsError:
                    pass
                tomb.unlink(missing_ok=True)
                return False
            tomb.unlink(missing_ok=True)
        else:
            return False
        with self._lock:
            self.held[ref] = lease
        return True

    def renew(self) -> list[CellRef]:
        """Extend every held lease; return the cells whose lease was lost (taken over after expiry).
        A lease the store will not let us rewrite (read-only, full) is kept as it is, to expire."""
        lost = []
        with self._lock:
            for ref, lease in list(self.held.items()):
                current = self.read(self.path(ref))
                if current is None or current.token != lease.token:
                    lost.append(ref)
                    del self.held[ref]
                    continue
                renewed = Lease(lease.owner, lease.token, time.time() + self.ttl, lease.host, lease.pid)
                try:
                    self._replace(self.path(ref), renewed)
                except OSError:
                    continue
                self.held[ref] = renewed
        return lost

    def release(self, ref: CellRef) -> None:
        """Remove the lease of a cell if it is still ours; it stays in ``held`` until it is gone, so
        that an interrupted release is done again by ``release_all``."""
        with self._lock:
            lease = self.held.get(ref)
        if lease is None:
            return
        current = self.read(self.path(ref))
        if current is not None and current.token == lease.token:
            try:
                self.path(ref).unlink(missing_ok=True)
            except OSError:  # a read-only store: the lease expires by itself
                pass
        with self._lock:
            self.held.pop(ref, None)

    def release_all(self) -> None:
        for ref in list(self.held):
            self.release(ref)

    def __enter__(self) -> Leases:
        """Renew the held leases in the background every third of ``ttl`` until the block ends."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._keep, name="idsuite-leases", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.release_all()

    def _keep(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            self.renew()
