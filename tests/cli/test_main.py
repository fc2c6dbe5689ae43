"""``idsuite run`` and ``idsuite list`` end to end on a tiny model and a local corpus."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from idsuite.cli.main import main
from idsuite.runners.models.zoo import DEFAULT_ZOO
from idsuite.suite.specs import SPECS
from tests.conftest import SENTENCES

ROOT = Path(__file__).resolve().parents[2]


def test_run_prints_summary_and_where_results_went(tmp_path, tiny_bert_dir, capsys):
    (tmp_path / "models.yaml").write_text(f"""
models:
  - id: tiny
    source: local
    path: {tiny_bert_dir}
    tags: [default]
""")
    corpus = tmp_path / "probe.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n")
    args = ["run", "--zoo", str(tmp_path / "models.yaml"), "--results", str(tmp_path / "out"), "--corpus", str(corpus),
            "--mlp-epochs", "5", "--attribution-max-tokens", "10", "--mixing-sequences", "3"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    for step in ("forward + metrics", "MLP maps g converged", "attribution", "context mixing"):  # progress of each long step
        assert f"  {step}:" in err, step
    assert "== Non-identifiable heads (rank_deficiency)" in out and "== Own-token contribution" in out
    assert str(tmp_path / "out" / "cells") in out and "1 model(s) complete, 0 with failures" in out
    assert main(args) == 0  # second run: everything cached
    assert "all metrics cached" in capsys.readouterr().out
    # another configuration beside the cached one: the tables show this run's cells only
    assert main(args + ["--attribution-probes", "3"]) == 0  # 32 probes (the default) are exact at d = 32
    few_probes = capsys.readouterr().out
    assert main(args) == 0
    again = capsys.readouterr().out
    attribution = [text.split("== Own-token contribution")[1] for text in (few_probes, out, again)]
    assert attribution[0] != attribution[1] and attribution[2] == attribution[1]
    assert main(["list", "--zoo", str(tmp_path / "models.yaml"), "--results", str(tmp_path / "out")]) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    assert header.split() == ["id", "source", "tags", "params", "L", "H", "kv", "d_h", "d", "stale"]
    assert row.split() == ["tiny", "local", "default", "21.2k", "2", "4", "4", "8", "32"]  # read from the config
    assert all(len(line) <= 80 for line in (header, row))

    # export: LaTeX and figures from the same results; no results is a one-line error
    assert main(["export", "--results", str(tmp_path / "out"), "--out", str(tmp_path / "paper")]) == 0
    assert (tmp_path / "paper" / "leaderboard.tex").exists()
    assert main(["export", "--results", str(tmp_path / "none"), "--out", str(tmp_path / "p2")]) == 2
    paper = ["export", "--results", str(tmp_path / "out"), "--out", str(tmp_path / "paper")]
    assert main([*paper, "--compare", "tiny", "tiny"]) == 0  # a model against itself: differences of zero
    assert "0.000" in (tmp_path / "paper" / "paired__tiny__vs__tiny.tex").read_text()
    capsys.readouterr()
    assert main([*paper, "--compare", "tiny"]) == 2  # no control in this store
    assert capsys.readouterr().err.strip().endswith("has no random-init control in these results; name the second model")

    # the console command (its read-only commands skip the interpreter's teardown): output flushed, files whole
    command = [sys.executable, "-m", "idsuite.cli.main", "export", "--results", str(tmp_path / "out"), "--out", str(tmp_path / "p3")]
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as a terminal user's shell has it
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300, env=buffered)
    printed = done.stdout.splitlines()
    assert done.returncode == 0 and len(printed) == 1 + 2 * len(SPECS)  # the table, a figure per metric (PNG, PDF)
    assert all(Path(p).stat().st_size > 0 for p in printed) and Path(printed[-1]).read_bytes().rstrip().endswith(b"%%EOF")
    done = subprocess.run([*command[:4], "--results", str(tmp_path / "none")], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env=buffered)
    assert done.returncode == 2 and done.stderr.startswith("error: no results in")

    # the figures' fork (draw_all) comes after the store's DuckDB connection is closed (no worker threads)
    probe = ("import gc, sys, duckdb\nimport idsuite.leaderboard.figures as figures\nreal = figures._forked\n"
             "def forked(work):\n    for db in (o for o in gc.get_objects() if isinstance(o, duckdb.DuckDBPyConnection)):\n"
             "        try:\n            db.execute('SELECT 1')\n            print('open connection at fork', file=sys.stderr)\n"
             "        except duckdb.ConnectionException:\n            print('closed connection at fork', file=sys.stderr)\n"
             "    return real(work)\nfigures._forked = forked\nfrom idsuite.cli.main import main\nsys.exit(main(sys.argv[1:]))\n")
    done = subprocess.run([sys.executable, "-c", probe, *paper[:2], str(tmp_path / "out"), "--out", str(tmp_path / "p4")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0 and done.stderr.splitlines() == ["closed connection at fork"], done.stderr


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path, unbuffered):
    """``idsuite list | head -1``: the pipe breaks while printing (unbuffered) or at the flush; the
    command ends quietly with 141, as a process ended by SIGPIPE does."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"} | ({"PYTHONUNBUFFERED": "1"} if unbuffered else {})
    listing = subprocess.Popen([sys.executable, "-m", "idsuite.cli.main", "list", "--zoo", str(DEFAULT_ZOO), "--results",
                                str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    listing.stdout.close()  # the reader has gone before the first line
    err = listing.stderr.read().decode()
    assert listing.wait(timeout=120) == 141 and "Traceback" not in err and "BrokenPipe" not in err


def test_bad_zoo_is_one_line_and_exit_code_two(tmp_path, capsys):
    (tmp_path / "models.yaml").write_text("models:\n  - id: x\n    source: hub\n    revison: main\n")
    assert main(["list", "--zoo", str(tmp_path / "models.yaml")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'models.yaml'}: entry #1 ('x'): unknown key 'revison'"]
    assert main(["run", "--zoo", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing.yaml'}: no such file (pass --zoo PATH)"
    assert main(["run", "--zoo", str(tmp_path / "models.yaml"), "--models", "nope"]) == 2
    assert "no entry or tag named 'nope'" in capsys.readouterr().err


def test_list_shows_a_config_entry_and_names_one_that_cannot_be_built(tmp_path, tiny_bert_dir, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    (tmp_path / "tiny.json").write_text('{"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2}')
    (tmp_path / "models.yaml").write_text(f"""models:
  - {{id: tiny, source: local, path: {tiny_bert_dir}}}
  - {{id: shape, source: config, config: tiny.json, tokenizer: tiny, init_seed: 3, tags: [sweep]}}
  - {{id: typo, source: config, config: tiny.json, tokenizer: tiny, overrides: {{num_hiden_layers: 3}}}}
""")
    assert main(["list", "--zoo", str(tmp_path / "models.yaml"), "--results", str(tmp_path / "out"), "--wide"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()  # at 80 columns the weights are a block of their own
    shape = [line.split() for line in lines if line.startswith("shape ")]
    assert shape[0] == ["shape", "config", "sweep"] and shape[1][1].startswith("config(seed=3):sha256=")
    assert lines[-1] == (f"unavailable: typo: 'overrides': config file {str(tmp_path / 'tiny.json')!r} "
                         "has no field 'num_hiden_layers'")


def test_the_token_limits_and_cost_budgets_of_attribution_and_context_mixing_are_options(tmp_path, capsys):
    from idsuite.cli.main import build_parser
    from idsuite.cli.run import validate

    (tmp_path / "models.yaml").write_text("models:\n  - {id: tiny, source: hub, tags: [default]}\n")
    run = ["run", "--zoo", str(tmp_path / "models.yaml"), "--results", str(tmp_path / "r")]
    plan = validate(build_parser().parse_args([*run, "--mixing-max-tokens", "64", "--attribution-max-tokens", "300",
                                               "--mixing-sequences", "30", "--mixing-target", "0.1",
                                               "--attribution-max-flops", "1e12", "--mixing-max-flops", "3e14"]))
    configs = plan.config.metric_configs()
    assert configs["context_mixing"].max_tokens == 64 and configs["hidden_token_attribution"].token_cap(64) == 300
    assert configs["hidden_token_attribution"].max_flops == 1e12 and configs["context_mixing"].max_flops == 3e14
    assert configs["context_mixing"].max_sequences == 30 and configs["context_mixing"].target_half_width == 0.1
    default = validate(build_parser().parse_args(run)).config.metric_configs()
    assert default["context_mixing"].max_tokens == 16  # modest by default
    assert [default["hidden_token_attribution"].token_cap(d) for d in (32, 64, 128, 256)] == [80, 160, 320, 640]
    for option, value, message in (
        ("--mixing-max-tokens", "2", "--mixing-max-tokens: input should be greater than or equal to 3 (got 2)"),
        ("--mixing-max-tokens", "1025", "--mixing-max-tokens: input should be less than or equal to 1024 (got 1025)"),
        ("--attribution-max-tokens", "1", "--attribution-max-tokens: input should be greater than or equal to 2 (got 1)"),
        ("--mixing-target", "0", "--mixing-target: input should be greater than 0 (got 0.0)"),
        ("--attribution-max-flops", "0", "--attribution-max-flops: input should be greater than 0 (got 0.0)"),
    ):
        assert main([*run, option, value]) == 2
        captured = capsys.readouterr()
        assert captured.err == f"error: {message}\n" and captured.out == ""
    assert not (tmp_path / "r").exists()
    helps = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    assert "2.5 x the model's head size d_h" in " ".join(helps.split()) and "(default None)" not in helps
    assert "the same rough count) (default 2e15)" in " ".join(helps.split())  # a float default in its shortest form


def test_stale_cells_are_counted_listed_and_recomputed(tmp_path, tiny_bert_dir, capsys, monkeypatch):
    import dataclasses

    from idsuite.suite.specs import SPECS

    (tmp_path / "models.yaml").write_text(f"models:\n  - {{id: tiny, source: local, path: {tiny_bert_dir}, tags: [default]}}\n")
    corpus = tmp_path / "probe.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n")
    args = ["run", "--zoo", str(tmp_path / "models.yaml"), "--results", str(tmp_path / "out"), "--corpus", str(corpus),
            "--mlp-epochs", "5", "--attribution-max-tokens", "10", "--mixing-sequences", "3"]
    listing = ["list", "--zoo", str(tmp_path / "models.yaml"), "--results", str(tmp_path / "out")]
    assert main(args) == 0
    assert f"{len(SPECS)} cell(s) to compute, 0 of them replacing stale cells" in capsys.readouterr().out
    rank = SPECS.get("rank_deficiency")  # the installed code now has a newer version of this metric
    monkeypatch.setitem(SPECS._entries, rank.name, dataclasses.replace(rank, version=rank.version + 1))
    assert main(listing) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[-1] == "1"  # one stale cell
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1 cell(s) to compute, 1 of them replacing stale cells" in out
    assert all(len(line) <= 80 for line in out.split("\n== ", 1)[1].splitlines() if not line.startswith("Parquet"))
    assert main(listing) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[-1] == "32"  # recomputed: the stale column is blank


def test_the_leaderboard_listens_on_this_machine_only_unless_told(monkeypatch):
    import idsuite.cli.board as board

    commands = []
    monkeypatch.setattr(board.subprocess, "call", lambda command, env: commands.append(command) or 0)
    assert main(["leaderboard"]) == 0 and main(["leaderboard", "--host", "0.0.0.0", "--port", "9000"]) == 0
    local, shared = commands
    assert local[local.index("--server.address") + 1] == "127.0.0.1"
    assert shared[shared.index("--server.address") + 1] == "0.0.0.0" and shared[shared.index("--server.port") + 1] == "9000"
