"""``idsuite run`` and ``idsuite list`` end to end on a tiny model and a local corpus."""

from runners.cli import main
from tests.conftest import SENTENCES


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
            "--mlp-steps", "5", "--attribution-max-tokens", "10"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "== Non-identifiable heads (rank_deficiency)" in out and "== Own-token contribution" in out
    assert str(tmp_path / "out" / "cells") in out and "1 model(s) complete, 0 with failures" in out
    assert main(args) == 0  # second run: everything cached
    assert "all metrics cached" in capsys.readouterr().out


def test_bad_zoo_is_one_line_and_exit_code_two(tmp_path, capsys):
    (tmp_path / "models.yaml").write_text("models:\n  - id: x\n    source: hub\n    revison: main\n")
    assert main(["list", "--zoo", str(tmp_path / "models.yaml")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'models.yaml'}: entry #1 ('x'): unknown key 'revison'"]
    assert main(["run", "--zoo", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing.yaml'}: no such file (pass --zoo PATH)"
    assert main(["run", "--zoo", str(tmp_path / "models.yaml"), "--models", "nope"]) == 2
    assert "no entry or tag named 'nope'" in capsys.readouterr().err
