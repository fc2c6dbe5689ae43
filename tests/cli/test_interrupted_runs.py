"""Real processes: a run killed with SIGKILL in the middle of writing a cell, then restarted, leaves
the store an uninterrupted run leaves (nothing finished recomputed, no partial file ever read); two
runs started together on one store compute each cell once."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from idsuite.results.query import ResultQuery
from idsuite.results.store import ResultStore
from idsuite.suite.specs import SPECS
from tests.processes import ROOT, cli, env, results_of, run_args

STALLED_WRITE = """
import io, pathlib, sys, time
import pyarrow.parquet as pq
marker, kill_at = sys.argv[1], int(sys.argv[2])
real, calls = pq.write_table, [0]
def stalled(table, where, **kwargs):
    calls[0] += 1
    if calls[0] == kill_at:  # half of the file's bytes are written, then the process hangs until killed
        buffer = io.BytesIO()
        real(table, buffer, **kwargs)
        where.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        where.flush()
        pathlib.Path(marker).write_text(str(where.name))
        time.sleep(600)
    return real(table, where, **kwargs)
pq.write_table = stalled
from idsuite.cli.main import main
sys.exit(main(sys.argv[3:]))
"""


def test_sigkill_in_the_middle_of_a_cell_write_then_restart(run_setup):
    clean, interrupted = run_setup / "clean", run_setup / "interrupted"
    assert cli(*run_args(run_setup, clean)).returncode == 0
    marker = run_setup / "marker"
    kill_at = 2 * len(SPECS) + 3  # each cell is two writes (cell, summary): the 2nd model's 2nd cell, half written
    process = subprocess.Popen([sys.executable, "-c", STALLED_WRITE, str(marker), str(kill_at),
                                *run_args(run_setup, interrupted)], cwd=ROOT, env=env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not marker.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert marker.exists(), "the run never reached the write to kill"
    process.send_signal(signal.SIGKILL)
    process.wait()
    store = ResultStore(interrupted)
    partial = Path(marker.read_text())
    assert partial.parent == store.staging and partial.exists()  # half a file, where no reader looks
    before = {p: p.stat().st_mtime_ns for p in store.cell_files()}
    assert len(before) == len(SPECS) + 1  # the first model's cells and the one written before the kill
    cells = ResultQuery(store).cells()
    assert len(cells) == len(SPECS) + 1 and cells["ok"].all()  # readers see whole cells only

    restarted = cli(*run_args(run_setup, interrupted))
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "all metrics cached" in restarted.stdout
    assert {p: p.stat().st_mtime_ns for p in before} == before  # nothing finished was recomputed
    assert not partial.exists() and list(store.staging.iterdir()) == []
    pd.testing.assert_frame_equal(results_of(interrupted), results_of(clean))


def computed_cells(log: str) -> list[tuple[str, str]]:
    """(model, metric) of every cell a run's log says it computed."""
    out, model = [], None
    for line in log.splitlines():
        header = re.match(r"\[\d+/\d+\] (.+)$", line)
        if header:
            model = header.group(1)
        elif re.match(r"  (\w+) \.\.\.$", line):
            out.append((model, line.strip()[:-4]))
    return out


def test_two_runs_on_one_store_compute_each_cell_once(run_setup):
    results = run_setup / "shared"
    argv = [sys.executable, "-m", "idsuite.cli.main", *run_args(run_setup, results)]
    runs = [subprocess.Popen(argv, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(2)]
    logs = [r.communicate(timeout=600)[0] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], logs
    done = [computed_cells(log) for log in logs]
    every = [cell for cells in done for cell in cells]
    assert len(every) == len(set(every)) == 4 * len(SPECS), done  # four models (two control seeds), once each
    rows = ResultQuery(results).cells()
    assert len(rows) == 4 * len(SPECS) and rows["ok"].all()
    assert sorted(rows["run_id"].value_counts().tolist()) == sorted(len(cells) for cells in done if cells)
