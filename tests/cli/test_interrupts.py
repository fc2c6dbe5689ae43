"""Who may stop a run: the user (Ctrl-C: one line, exit code 130, leases released), never a model's
own code (its ``SystemExit`` or ``KeyboardInterrupt`` is that model's failure)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

from idsuite.results.query import ResultQuery
from idsuite.results.store import ResultStore
from idsuite.runners.jobs import Runner
from idsuite.runners.models.zoo import load_zoo
from idsuite.runners.probing.corpus import Corpus
from idsuite.runners.run_config import RunConfig
from idsuite.suite.specs import SPECS
from tests.conftest import SENTENCES
from tests.processes import ROOT, env, run_args
from tests.runners.test_faults import FAST

MODEL_CODE = """
from transformers import BertModel


class ExitingBert(BertModel):  # its forward pass ends the interpreter
    def forward(self, *args, **kwargs):
        raise SystemExit(3)


class InterruptingBert(BertModel):  # it interrupts as it is built
    def __init__(self, config):
        raise KeyboardInterrupt
"""


def with_own_code(source, target, name):
    """A copy of a tiny BERT whose AutoModel is ``name`` of ``MODEL_CODE`` (trust_remote_code)."""
    shutil.copytree(source, target)
    (target / "own_code.py").write_text(MODEL_CODE)
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps(config | {"auto_map": {"AutoModel": f"own_code.{name}"}}))
    return target


def test_a_models_own_exit_or_keyboard_interrupt_is_its_failure_and_the_run_goes_on(tmp_path, tiny_bert_dir):
    exiting = with_own_code(tiny_bert_dir, tmp_path / "exiting", "ExitingBert")
    interrupting = with_own_code(tiny_bert_dir, tmp_path / "interrupting", "InterruptingBert")
    (tmp_path / "models.yaml").write_text(f"""
models:
  - {{id: exiting, source: local, path: {exiting}, trust_remote_code: true}}
  - {{id: interrupting, source: local, path: {interrupting}, trust_remote_code: true}}
  - {{id: tiny, source: local, path: {tiny_bert_dir}}}
""")
    zoo = load_zoo(tmp_path / "models.yaml")
    runner = Runner(zoo, Corpus("tiny", [(s, None) for s in SENTENCES]), RunConfig(metric_settings=FAST, batch_size=4),
                    ResultStore(tmp_path / "results"), "r", log=lambda line: None)
    outcomes = {o.model_id: o for o in runner.run(["exiting", "interrupting", "tiny"])}
    assert set(outcomes["exiting"].failed.values()) == {"forward pass, batch 1 of 2: SystemExit: 3"}
    assert set(outcomes["interrupting"].failed.values()) == {"load: KeyboardInterrupt"}
    assert sorted(outcomes["tiny"].computed) == sorted(SPECS)
    cells = ResultQuery(tmp_path / "results").cells()
    assert cells.groupby("model_id")["ok"].all().to_dict() == {"exiting": False, "interrupting": False, "tiny": True}


def test_ctrl_c_stops_the_run_with_one_line_and_exit_code_130_and_releases_its_leases(run_setup):
    results = run_setup / "results"
    process = subprocess.Popen([sys.executable, "-m", "idsuite.cli.main", *run_args(run_setup, results)], cwd=ROOT,
                               env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list(results.glob("leases/*/*.lease")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert list(results.glob("leases/*/*.lease")), "the run never started computing"
    process.send_signal(signal.SIGINT)  # what the terminal sends on Ctrl-C
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted: the run stopped (Ctrl-C)")
    assert list(results.glob("leases/*/*.lease")) == []
    assert list(results.glob("staging/*")) == []
