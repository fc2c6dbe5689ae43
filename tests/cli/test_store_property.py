"""A property of the store under any mix of faults: hypothesis draws a sequence of runs killed at a
random moment, runs started together, and damaged or foreign files anywhere under the store; after
each step ``idsuite list`` and the reader answer (never a crash), and after one final clean run the
store holds exactly what a clean run on an empty store writes, cell for cell."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from idsuite.cli.main import main
from idsuite.results.query import ResultQuery
from idsuite.results.store import CARD_KEY, ResultStore
from tests.conftest import SENTENCES
from tests.processes import ROOT, env, results_of

DAMAGE = ["truncate_cell", "truncate_summary", "bad_card", "foreign_cell", "foreign_summary", "staging_folder",
          "folder_for_summary", "garbage_lease", "future_lease"]
steps = st.one_of(
    st.tuples(st.just("kill"), st.floats(1.0, 14.0)),  # seconds after the start: loading, computing or writing
    st.tuples(st.just("together"), st.floats(1.0, 14.0)),  # two runs at once, the first killed after that long
    st.tuples(st.sampled_from(DAMAGE), st.integers(0, 50)),  # which file, modulo those there are
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_bert_dir, tiny_llama_dir) -> Path:
    """A zoo of two tiny models, a probe file, and the store a clean run writes (``clean``)."""
    folder = tmp_path_factory.mktemp("property")
    (folder / "models.yaml").write_text(f"""
models:
  - {{id: tiny, source: local, path: {tiny_bert_dir}}}
  - {{id: tiny-decoder, source: local, path: {tiny_llama_dir}}}
""")
    (folder / "probe.txt").write_text("\n".join(SENTENCES) + "\n")
    assert start(folder, folder / "clean").wait(timeout=600) == 0
    return folder


def start(setup: Path, results: Path) -> subprocess.Popen:
    argv = ["run", "--zoo", str(setup / "models.yaml"), "--models", "tiny", "tiny-decoder", "--corpus",
            str(setup / "probe.txt"), "--results", str(results), "--mlp-epochs", "5", "--attribution-max-tokens", "10",
            "--feasible-sequences", "4", "--feasible-max-tokens", "12"]
    return subprocess.Popen([sys.executable, "-m", "idsuite.cli.main", *argv], cwd=ROOT, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def killed_after(process: subprocess.Popen, seconds: float) -> None:
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()


def damage(store: ResultStore, kind: str, index: int) -> None:
    """One kind of damage to the ``index``-th file of its kind (modulo how many there are)."""
    cells, summaries = store.cell_files(), [p for p in store.summary_sources() if p.parent.parent == store.summaries]
    pick = lambda paths: paths[index % len(paths)] if paths else None  # noqa: E731
    if kind == "truncate_cell" and (path := pick(cells)):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "truncate_summary" and (path := pick(summaries)):
        path.write_bytes(path.read_bytes()[:-12])
    elif kind == "bad_card" and (path := pick(summaries)):
        table = pq.read_table(path)
        pq.write_table(table.replace_schema_metadata(table.schema.metadata | {CARD_KEY: b"\xff{"}), path)
    elif kind in ("foreign_cell", "foreign_summary"):
        tree = store.cells if kind == "foreign_cell" else store.summaries
        (tree / "tiny").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"layer": ["x"], "value": ["y"]}), tree / "tiny" / f"foreign-{index}.parquet")
    elif kind == "staging_folder":
        (store.staging / f"folder-{index}").mkdir(parents=True, exist_ok=True)
    elif kind == "folder_for_summary" and (path := pick(summaries)):
        path.unlink()
        path.mkdir()
    elif kind in ("garbage_lease", "future_lease") and (path := pick(cells)):
        ref = store.ref_of(path)
        lease = store.root / "leases" / path.parent.name / f"{ref.metric}-{ref.key}.lease"
        lease.parent.mkdir(parents=True, exist_ok=True)
        lease.write_text("{not json" if kind == "garbage_lease" else json.dumps(
            {"owner": "elsewhere", "token": "t", "expires": time.time() + 10**9, "host": "another-host", "pid": 1}))


def readers_answer(setup: Path, results: Path) -> None:
    """``idsuite list`` exits as it should (0, or 1 for zoo errors) and the reader lists cells."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["list", "--zoo", str(setup / "models.yaml"), "--results", str(results)]) == 0
    cells = ResultQuery(results).cells()
    assert set(cells["model_id"]) <= {"tiny", "tiny-decoder"}


@settings(max_examples=3, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking:
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # each example is ~30 s
@given(st.lists(steps, min_size=1, max_size=2))
def test_kills_damage_and_concurrent_runs_then_a_clean_run_give_the_clean_store(setup, sequence):
    with tempfile.TemporaryDirectory() as folder:
        results = Path(folder) / "results"
        store = ResultStore(results)
        for kind, value in sequence:
            if kind == "kill":
                killed_after(start(setup, results), value)
            elif kind == "together":
                first, second = start(setup, results), start(setup, results)
                killed_after(first, value)
                assert second.wait(timeout=600) == 0
            else:
                damage(store, kind, value)
            readers_answer(setup, results)
        final = start(setup, results)
        assert final.wait(timeout=600) == 0
        readers_answer(setup, results)
        pd.testing.assert_frame_equal(results_of(results), results_of(setup / "clean"))
        assert list(results.glob("staging/*")) == []  # (a forged lease on a finished cell is never read again)
