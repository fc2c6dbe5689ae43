"""The idsuite cache (``$IDSUITE_CACHE``, default ``~/.cache/idsuite``), and the digests of weight
files remembered there (``$IDSUITE_DIGESTS``, default its ``digests`` folder), so that ``idsuite
list`` and every run do not read gigabytes again.

A digest is remembered per version of its files. A file's version is what ``stat`` says of it,
with its path as named and as resolved: device, inode, size, modification and change times in
nanoseconds. On local POSIX filesystems writing to a file or replacing it changes its change time,
which no tool can set back, so a changed file is read again. Where change times are fixed or
copied from modification times (squashfs images, some FUSE or SMB mounts), or where hosts share
the cache but not the files, point ``$IDSUITE_DIGESTS`` at a folder of that host or filesystem.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

DIGEST = re.compile(r"[0-9a-f]{16,64}")
"""What a remembered digest looks like; anything else in its file is computed again."""


def cache_root() -> Path:
    return Path(os.environ.get("IDSUITE_CACHE") or Path.home() / ".cache" / "idsuite")


def digest_folder() -> Path:
    return Path(os.environ.get("IDSUITE_DIGESTS") or cache_root() / "digests")


def _version(path: Path) -> tuple[str, str, int, int, int, int, int]:
    """The path as named (a renamed link changes a folder's digest) and as resolved, and ``stat`` of
    what it points to."""
    stat = path.stat()
    return (os.path.abspath(path), str(path.resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns,
            stat.st_ctime_ns)


def remembered(kind: str, files: Sequence[Path], compute: Callable[[], str]) -> str:
    """``compute()``, a hex digest of ``files`` by the method ``kind``: read from the cache when these
    versions of the files were digested before, else computed and stored (atomically; a cache that
    cannot be written only means computing it again next time)."""
    key = hashlib.sha256(repr((kind, [_version(p) for p in files])).encode()).hexdigest()[:40]
    path = digest_folder() / key
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if DIGEST.fullmatch(text := path.read_text().strip()):
            return text
    digest = compute()
    remember_text(path, digest)
    return digest


def remember_text(path: Path, text: str) -> None:
    """Write a small cache file atomically (a temporary file beside it, then a rename); a cache that
    cannot be written is left as it was: it only means finding ``text`` again next time."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def feed(digest: hashlib._Hash, path: Path) -> None:
    """Update ``digest`` with the bytes of the file ``path``, read in blocks of 1 MiB."""
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    feed(digest, path)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file, read once per version of the file (``remembered``)."""
    return remembered("sha256", [path], lambda: _sha256(path))
