"""``idsuite run`` against a hub of our own (``tests.hub_server``, on 127.0.0.1, through
``HF_ENDPOINT``): the real loading code of huggingface_hub, transformers and datasets, nothing
mocked. A fresh load pins every cell to the commit it measured; a revision named by branch and by
sha is one cell; a moved branch makes new cells and says so; gated, missing, bad-revision,
remote-code, cut-off repos and a refusing file host fail with their cause in one line, once during the run and once in
the summary, naming the configured endpoint; offline, the local cache's refs resolve the
revision and the cached files load.

Four runs in subprocesses (the hub's endpoint is read when huggingface_hub is imported) share one
module fixture; each test reads its part of them.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from idsuite.results.query import ResultQuery
from idsuite.results.selection import select, with_settings
from idsuite.suite.specs import SPECS
from tests.conftest import SENTENCES, save_tiny
from tests.hub_server import Hub, folder_files
from tests.processes import ROOT

ENTRIES = {  # id -> (repo, revision)
    "tiny": ("org/tiny", "main"),
    "tiny-pinned": ("org/tiny", "{first}"),
    "gated": ("org/gated", "main"),
    "missing": ("org/missing", "main"),
    "bad-revision": ("org/tiny", "no-such-branch"),
    "cut": ("org/cut", "main"),
    "no-file-host": ("org/no-file-host", "main"),
    "no-weights": ("org/no-weights", "main"),
    "remote-code": ("org/remote-code", "main"),
}
CONFIG_ENTRY = "  - {id: no-config, source: config, repo: org/empty, tokenizer: tiny}"
"""A config entry whose repo has no config.json (its config is the only file it reads)."""
CONTROL_ENTRY = "  - {id: missing-control, source: random_init, base: missing, init_seeds: [0, 1]}"
"""A control of two init seeds whose base does not exist: one line per seed in the run, one in the summary."""
FAILING = ["gated", "missing", "bad-revision", "cut", "no-file-host", "no-weights", "remote-code", "no-config"]


def write_zoo(path: Path, entries: dict[str, tuple[str, str]], first: str, *more: str) -> Path:
    lines = [f"  - {{id: {i}, source: hub, repo: {repo}, revision: '{rev.format(first=first)}'}}"
             for i, (repo, rev) in entries.items()]
    path.write_text("models:\n" + "\n".join([*lines, *more]) + "\n")
    return path


@dataclass
class Runs:
    hub: Hub
    first: str  # main of org/tiny at first
    moved: str  # main of org/tiny after it moved
    dataset: str  # main of data/probe
    results: Path
    offline_results: Path
    out: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)


def idsuite(runs_env: dict[str, str], zoo: Path, results: Path, models: list[str], corpus: str) -> subprocess.CompletedProcess:
    args = ["run", "--zoo", str(zoo), "--models", *models, "--corpus", corpus, "--text-column", "text",
            "--results", str(results), "--mlp-epochs", "3", "--attribution-max-tokens", "8", "--max-sequences", "6",
            "--mixing-sequences", "2", "--mixing-max-tokens", "8", "--feasible-sequences", "2",
            "--feasible-max-tokens", "10"]
    return subprocess.run([sys.executable, "-m", "idsuite.cli.main", *args], cwd=ROOT, env=runs_env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    tmp = tmp_path_factory.mktemp("hub")
    first_model = folder_files(save_tiny(tmp / "first", "bert", seed=0))
    moved_model = folder_files(save_tiny(tmp / "moved", "bert", seed=1))
    hub = Hub()
    first = hub.add("org/tiny", first_model).refs["main"]
    hub.add("org/gated", first_model, gated=True, token="the-right-token")
    hub.add("org/cut", folder_files(save_tiny(tmp / "cut", "bert", seed=2)))
    hub.cuts[("org/cut", "model.safetensors")] = 4_000  # every transfer of org/cut's weights stops after 4 kB
    with socket.socket() as closed:  # a port nothing listens on: the file host refuses
        closed.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{closed.getsockname()[1]}"
    hub.add("org/no-file-host", folder_files(save_tiny(tmp / "no-file-host", "bert", seed=3)), files_at=refused)
    hub.add("org/no-weights", {n: b for n, b in first_model.items() if not n.endswith(".safetensors")})
    remote = dict(first_model, **{"config.json": b'{"model_type": "tiny-custom", "auto_map": '
                                                   b'{"AutoConfig": "configuration.C", "AutoModel": "modeling.M"}}'})
    hub.add("org/remote-code", remote)
    rows = "".join(json.dumps({"text": s}) + "\n" for s in SENTENCES)
    dataset = hub.add("data/probe", {"probe.jsonl": rows.encode()}, kind="datasets").refs["main"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env |= {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp / "hf"), "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_XET": "1", "IDSUITE_CACHE": str(tmp / "idsuite-cache"), "PYTHONPATH": str(ROOT),
            "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    runs = Runs(hub, first, "", dataset, tmp / "results", tmp / "offline-results")
    hub.add("org/empty", {"README.md": b"nothing here"})
    zoo = write_zoo(tmp / "models.yaml", ENTRIES, first, CONFIG_ENTRY, CONTROL_ENTRY)
    try:
        runs.out["first"] = idsuite(env, zoo, runs.results, [*ENTRIES, "no-config", "missing-control"], "data/probe")
        runs.moved = hub.move("org/tiny", moved_model)
        runs.out["moved"] = idsuite(env, zoo, runs.results, ["tiny", "tiny-pinned"], "data/probe")
        by_sha = write_zoo(tmp / "by-sha.yaml", {"tiny": ("org/tiny", first)}, first)
        runs.out["by_sha"] = idsuite(env, by_sha, runs.results, ["tiny"], "data/probe")
    finally:
        hub.close()  # from here on nothing answers at the endpoint
    offline = env | {"HF_HUB_OFFLINE": "1"}
    runs.out["offline"] = idsuite(offline, zoo, runs.offline_results, ["tiny", "missing"], "data/probe")
    return runs


def cells(results: Path) -> pd.DataFrame:
    return with_settings(ResultQuery(results).cells())


def test_a_fresh_load_pins_every_cell_to_the_commit_it_measured(runs):
    first = runs.out["first"]
    assert first.returncode == 1, first.stderr[-3000:]  # the failing entries
    stored = cells(runs.results)
    ok = stored[stored["ok"]]
    assert set(ok["model_id"]) == {"tiny", "tiny-pinned"}
    first_cells = ok[ok["run_id"] == ok.loc[ok["model_id"] == "tiny-pinned", "run_id"].iloc[0]]
    assert set(first_cells["model_commit"]) == {runs.first}
    assert set(first_cells["model_fingerprint"]) == {f"hub:org/tiny@{runs.first}"}
    assert set(ok["corpus_id"]) == {f"data/probe@{runs.dataset[:12]}:train"}  # the full id and its commit
    # the weights came the way the hub serves large files: a redirect to its file host
    assert any(m == "HEAD" and "/org/tiny/resolve/" in p and "model.safetensors" in p and s == 302
               for m, p, s in runs.hub.requests)
    assert any(p.startswith("/blobs/") and s == 200 for _, p, s in runs.hub.requests)


def test_a_branch_and_its_sha_are_one_cell(runs):
    stored = cells(runs.results)
    first = stored[stored["model_commit"] == runs.first]
    by_branch = set(first.loc[first["model_id"] == "tiny", "cell_key"])
    assert by_branch == set(first.loc[first["model_id"] == "tiny-pinned", "cell_key"])  # same key, by branch and by sha
    by_sha = runs.out["by_sha"]
    assert by_sha.returncode == 0, by_sha.stdout[-3000:] + by_sha.stderr[-3000:]
    assert "0 cell(s) to compute" in by_sha.stdout and "all metrics cached" in by_sha.stdout
    assert "moved" not in by_sha.stdout


def test_a_moved_branch_makes_new_cells_says_so_and_never_mixes(runs):
    moved = runs.out["moved"]
    assert moved.returncode == 0, moved.stdout[-3000:] + moved.stderr[-3000:]
    said = [line for line in moved.stdout.splitlines() if "revision 'main' has moved" in line]
    assert len(said) == 1 and said[0].startswith("tiny:") and runs.moved[:12] in said[0] and runs.first[:12] in said[0]
    stored = cells(runs.results)
    tiny = stored[(stored["model_id"] == "tiny") & stored["ok"]]
    assert set(tiny["model_commit"]) == {runs.first, runs.moved}
    assert (tiny["model_commit"] == runs.first).sum() == (tiny["model_commit"] == runs.moved).sum()  # every metric anew
    chosen = select(stored)
    assert set(chosen.loc[chosen["model_id"] == "tiny", "model_commit"]) == {runs.moved}  # the old ones superseded
    assert set(chosen.loc[chosen["model_id"] == "tiny-pinned", "model_commit"]) == {runs.first}  # a sha does not move
    assert not chosen["mixed_weights"].any()


CAUSES = {
    "gated": r"org/gated is gated on {endpoint}: accept its licence at {endpoint}/org/gated, then log in .* or set HF_TOKEN",
    "missing": r"org/missing does not exist on {endpoint}",
    "bad-revision": r"org/tiny has no revision 'no-such-branch' on {endpoint}",
    "cut": r"the download of org/cut@main from {endpoint} was cut off mid-file",
    "no-file-host": r"cannot connect to the file host http://127.0.0.1:\d+ \(where {endpoint} sends the download\) "
                    r"for org/no-file-host@main: connection refused",
    "no-weights": r"org/no-weights does not appear to have a file named .*model.safetensors.* \(hub: {endpoint}, "
                  r"org/no-weights@main\)",
    "no-config": r"cannot download the config.json of 'org/empty' at 'main': org/empty@main on {endpoint} has no file "
                 r"'config.json'",
    "remote-code": r"org/remote-code runs its own code, which is refused: set 'trust_remote_code: true'",
}


@pytest.mark.parametrize("entry", FAILING)
def test_a_failing_entry_names_its_cause_once_in_the_run_and_once_in_the_summary(runs, entry):
    out = runs.out["first"].stdout
    cause = re.compile(CAUSES[entry].format(endpoint=re.escape(runs.hub.endpoint)))
    blocks = re.split(r"^\[\d+/\d+\] ", out[: out.index("Parquet cells:")], flags=re.MULTILINE)
    own = next(b for b in blocks if b.startswith(f"{entry}\n")).splitlines()[1:]  # what the run said of the entry
    assert own == [f"  FAILED (all {len(SPECS)} metrics): {own[0].split(': ', 1)[1]}"] and cause.search(own[0]), out[-4000:]
    summary = [line for line in out[out.index("with failures"):].splitlines() if line.startswith(f"  {entry}:")]
    assert len(summary) == 1 and cause.search(summary[0])
    assert "huggingface.co" not in out
    stored = cells(runs.results)
    errors = stored.loc[stored["model_id"] == entry, "error"]
    assert len(errors) and errors.map(lambda e: bool(cause.search(e))).all()


def test_a_control_whose_seeds_fail_alike_is_one_line_of_the_summary(runs):
    out = runs.out["first"].stdout
    summary = out[out.index("with failures"):].splitlines()
    lines = [line for line in summary if "missing-control" in line]
    assert lines == [f"  missing-control (2 init seeds): weights: org/missing does not exist on {runs.hub.endpoint} "
                     "(or is private: log in or set HF_TOKEN)"]
    during = out[: out.index("with failures")]
    assert during.count(f"FAILED (all {len(SPECS)} metrics): weights: org/missing does not exist") == 3  # missing, each seed


def test_offline_the_cache_resolves_the_branch_and_loads(runs):
    offline = runs.out["offline"]
    assert offline.returncode == 1, offline.stdout[-3000:] + offline.stderr[-3000:]  # 'missing' was never cached
    stored = cells(runs.offline_results)
    ok = stored[stored["ok"]]
    assert set(ok["model_id"]) == {"tiny"} and set(ok["model_commit"]) == {runs.moved}  # refs/main after the move
    assert set(ok["corpus_id"]) == {f"data/probe@{runs.dataset[:12]}:train"}
    online = cells(runs.results)
    moved_keys = set(online.loc[(online["model_commit"] == runs.moved) & online["ok"], "cell_key"])
    assert set(ok.loc[ok["model_id"] == "tiny", "cell_key"]) == moved_keys  # the same cells as online
    missing = [line for line in offline.stdout.splitlines() if "org/missing" in line]
    assert len(missing) == 2 and all("HF_HUB_OFFLINE is set" in line and runs.hub.endpoint in line for line in missing)


def test_a_host_that_does_not_answer_is_named_as_the_root_cause():
    """A timeout deep in the exception chain (as transformers wraps it in an OSError about local
    folders) is the line's cause, with the host that did not answer."""
    import httpx2

    from idsuite.runners.models.hub import failure_cause

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        try:
            try:
                httpx2.get(f"http://127.0.0.1:{silent.getsockname()[1]}/org/m/resolve/main/config.json", timeout=0.2)
            except httpx2.TimeoutException as e:
                raise OSError("make sure you don't have a local directory with the same name") from e
        except OSError as wrapped:
            line = failure_cause(wrapped, "org/m", "main")
    assert re.fullmatch(r"the file host http://127\.0\.0\.1:\d+ \(where https://huggingface\.co sends the download\) did "
                        r"not answer in time for org/m@main \(.*\)", line), line


def test_a_worker_reads_the_commits_its_run_resolved():
    """What the planning process resolved is handed to Ray workers (``hub.pin``): they read the same
    commit without asking again, even where they could not resolve it themselves (offline here, and
    the repo in no cache)."""
    from idsuite.runners.models import hub

    key = ("org/only-pinned", "main", "model")
    hub.pin({key: "c" * 40})
    try:
        assert hub.resolved_commit("org/only-pinned", "main") == "c" * 40 and hub.pinned()[key] == "c" * 40
    finally:
        hub._RESOLVED.pop(key)
    with pytest.raises(hub.HubError, match="org/only-pinned@main is not in the local cache"):
        hub.resolved_commit("org/only-pinned", "main")
