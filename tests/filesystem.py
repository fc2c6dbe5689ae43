"""A file system that refuses writes under one folder, for tests that run as root (where ``chmod``
cannot make a folder read-only) or need a full disk without filling one.

``refused_writes(root, code)`` patches the calls through which Python creates, changes or removes
files (``os.open`` with a writing flag, ``open`` / ``io.open`` in a writing mode, ``os.mkdir``,
``os.replace``, ``os.rename``, ``os.link``, ``os.unlink``, ``os.rmdir``): under ``root`` each fails
as the kernel would fail it on a read-only (``EROFS``) or full (``ENOSPC``) file system, with an
``OSError`` of that errno naming the path; reads and everything outside ``root`` are untouched.
Nothing inside idsuite is replaced: the faults arrive where the operating system's would.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

WRITING_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
PATH_CALLS = {"mkdir": 1, "replace": 2, "rename": 2, "link": 2, "unlink": 1, "rmdir": 1}
"""The ``os`` functions that change the file system, and how many of their first arguments are paths."""


def _under(path: object, root: str) -> bool:
    try:
        full = os.path.abspath(os.fsdecode(path))
    except TypeError:  # a file descriptor
        return False
    return full == root or full.startswith(root + os.sep)


@contextlib.contextmanager
def refused_writes(root: str | Path, code: int) -> Iterator[None]:
    """Within the block, every write under ``root`` fails with ``OSError(code)``."""
    root = os.path.abspath(root)
    real_os = {name: getattr(os, name) for name in [*PATH_CALLS, "open"]}
    real_open = io.open

    def refuse(path: object) -> None:
        raise OSError(code, os.strerror(code), os.fsdecode(path))

    def guarded(name: str, paths: int):
        def call(*args, **kwargs):
            for path in args[:paths]:
                if _under(path, root):
                    refuse(path)
            return real_os[name](*args, **kwargs)
        return call

    def os_open(path, flags, *args, **kwargs):
        if flags & WRITING_FLAGS and _under(path, root):
            refuse(path)
        return real_os["open"](path, flags, *args, **kwargs)

    def file_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and _under(file, root):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    patches = {**{name: guarded(name, n) for name, n in PATH_CALLS.items()}, "open": os_open}
    try:
        for name, function in patches.items():
            setattr(os, name, function)
        io.open = builtins.open = file_open
        yield
    finally:
        for name, function in real_os.items():
            setattr(os, name, function)
        io.open = builtins.open = real_open

