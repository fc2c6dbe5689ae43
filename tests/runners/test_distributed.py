"""The Ray backend against a real local Ray cluster on loopback (started here, or the one at
``$IDSUITE_RAY_ADDRESS`` that ``.ci/run`` starts): its store equals the local backend's, also when a
worker process is killed in the middle of a task (Ray runs the task again)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.processes import ROOT, env, results_of, run_args

if shutil.which("ray") is None and os.environ.get("IDSUITE_REQUIRE_RAY") != "1":
    pytest.skip("Ray is not installed (pip install -e '.[ray]')", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_address():
    if os.environ.get("IDSUITE_RAY_ADDRESS"):
        yield os.environ["IDSUITE_RAY_ADDRESS"]
        return
    port = _free_port()
    start = ["ray", "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
             "--include-dashboard=false", "--disable-usage-stats"]
    subprocess.run(start, check=True, capture_output=True, env=env(), timeout=120)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run(["ray", "stop", "--force"], capture_output=True, timeout=120)


def ray_run(setup: Path, results: Path, address: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "idsuite.cli.main", *run_args(setup, results), "--backend", "ray", "--address", address]
    return subprocess.Popen(argv, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def local_run(setup: Path) -> pd.DataFrame:
    local = subprocess.run([sys.executable, "-m", "idsuite.cli.main", *run_args(setup, setup / "local")], cwd=ROOT, env=env(),
                           capture_output=True, text=True, timeout=600)
    assert local.returncode == 0, local.stdout + local.stderr
    return results_of(setup / "local")


def test_a_ray_run_writes_the_local_runs_store(run_setup, ray_address):
    expected = local_run(run_setup)
    process = ray_run(run_setup, run_setup / "ray", ray_address)
    log = process.communicate(timeout=600)[0]
    assert process.returncode == 0, log
    assert "4 model(s) complete, 0 with failures" in log
    pd.testing.assert_frame_equal(results_of(run_setup / "ray"), expected)


def _task_processes(name: str) -> list[int]:
    """Worker processes running a task called ``name`` (Ray sets the process title to ``ray::<name>``)."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines()[1:] if f"ray::{name}" in line]


def test_a_worker_killed_in_the_middle_of_a_task_is_retried(run_setup, ray_address):
    expected = local_run(run_setup)
    process = ray_run(run_setup, run_setup / "ray-killed", ray_address)
    deadline, killed = time.time() + 300, None
    while killed is None and time.time() < deadline and process.poll() is None:
        workers = _task_processes("idsuite:tiny-decoder")
        if workers:
            os.kill(workers[0], signal.SIGKILL)
            killed = workers[0]
        time.sleep(0.05)
    log = process.communicate(timeout=600)[0]
    assert killed is not None, "the task was never seen running"
    assert process.returncode == 0, log
    pd.testing.assert_frame_equal(results_of(run_setup / "ray-killed"), expected)
