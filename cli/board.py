"""``idsuite leaderboard`` (the Streamlit app over a store) and ``idsuite export`` (paper files)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from idsuite.cli.errors import CliError


def leaderboard_command(args: argparse.Namespace) -> int:
    from idsuite import leaderboard

    app = Path(leaderboard.__file__).resolve().parent / "app.py"
    env = dict(os.environ, IDSUITE_RESULTS=str(Path(args.results).resolve()))
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", args.host,
               "--server.port", str(args.port),
               "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    return subprocess.call(command, env=env)


def _writable_folder(out: Path) -> None:
    """Make ``out`` (``--out``) and check that files can be written into it, before any work:
    a file of that name, a read-only folder or a full disk is one line."""
    if out.exists() and not out.is_dir():
        raise CliError(f"--out: {str(out)!r} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out) as probe:
            probe.write(b"idsuite")
            probe.flush()
    except OSError as e:
        raise CliError(f"--out: cannot write into {str(out)!r}: {e.strerror or type(e).__name__}") from None


def export_command(args: argparse.Namespace) -> int:
    _writable_folder(Path(args.out))
    try:
        return _export(args)
    except OSError as e:  # the folder filled up or went read-only meanwhile
        raise CliError(f"--out: cannot write {str(e.filename or args.out)!r}: {e.strerror or type(e).__name__}") from None


def _export(args: argparse.Namespace) -> int:
    from idsuite.leaderboard.data import Board
    from idsuite.leaderboard.export import export, export_paired
    from idsuite.results.headlines import headline_variants

    board = Board(args.results, variants=headline_variants())  # the table and figures show headlines only
    if board.cells.empty:
        raise CliError(f"no results in {args.results!r} (run `idsuite run` first)")
    if args.compare is not None:
        if len(args.compare) > 2:
            raise CliError("--compare: one or two models")
        unknown = [m for m in args.compare if m not in board.models()]
        if unknown:
            raise CliError(f"--compare: no finished results for {', '.join(map(repr, unknown))}")
    paired = []
    if args.compare:
        try:
            paired = export_paired(board, args.compare[0], args.compare[1] if len(args.compare) > 1 else None,
                                   Path(args.out))
        except ValueError as e:
            raise CliError(f"--compare: {e}") from None
    paths = export(board, Path(args.out)) + paired  # closes the board before the figures fork
    for path in paths:
        print(path)
    return 0
