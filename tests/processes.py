"""Helpers for tests that run ``idsuite`` in real processes (a killed run, concurrent runs, Ray)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from idsuite.results.query import ResultQuery
from idsuite.suite.specs.rows import ROW_COLUMNS
from tests.conftest import SENTENCES

ROOT = Path(__file__).resolve().parents[1]


def write_run_setup(tmp_path: Path, tiny_bert_dir: Path, tiny_llama_dir: Path) -> Path:
    """A zoo of three tiny models (the control with two init seeds) and a probe file in ``tmp_path``."""
    (tmp_path / "models.yaml").write_text(f"""
models:
  - {{id: tiny, source: local, path: {tiny_bert_dir}}}
  - {{id: tiny-decoder, source: local, path: {tiny_llama_dir}}}
  - {{id: tiny-control, source: random_init, base: tiny, init_seeds: [0, 1]}}
""")
    (tmp_path / "probe.txt").write_text("\n".join(SENTENCES) + "\n")
    return tmp_path


def run_args(setup: Path, results: Path) -> list[str]:
    return ["run", "--zoo", str(setup / "models.yaml"), "--models", "tiny", "tiny-decoder", "tiny-control",
            "--corpus", str(setup / "probe.txt"), "--results", str(results), "--mlp-epochs", "5",
            "--attribution-max-tokens", "10", "--feasible-sequences", "4", "--feasible-max-tokens", "12"]


def env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), TQDM_DISABLE="1")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "idsuite.cli.main", *args], cwd=ROOT, env=env(), capture_output=True,
                          text=True, timeout=600)


def results_of(root: Path) -> pd.DataFrame:
    rows = ResultQuery(root).all_rows(columns=["model_id", "init_seed", "cell_key", *ROW_COLUMNS])
    return rows.sort_values(["model_id", "cell_key", "variant", "layer", "head", "sequence", "query", "key"],
                            na_position="first", ignore_index=True)


