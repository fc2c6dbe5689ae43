"""``idsuite leaderboard`` (the Streamlit app over a store) and ``idsuite export`` (paper files)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from cli.errors import CliError


def leaderboard_command(args: argparse.Namespace) -> int:
    import leaderboard

    app = Path(leaderboard.__file__).resolve().parent / "app.py"
    env = dict(os.environ, IDSUITE_RESULTS=str(Path(args.results).resolve()))
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(args.port),
               "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    return subprocess.call(command, env=env)


def export_command(args: argparse.Namespace) -> int:
    from leaderboard.data import Board
    from leaderboard.export import export

    board = Board(args.results)
    if board.cells.empty:
        raise CliError(f"no results in {args.results!r} (run `idsuite run` first)")
    for path in export(board, Path(args.out)):
        print(path)
    return 0
