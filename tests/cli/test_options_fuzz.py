"""Fuzzing ``idsuite run``'s options: any values give a validated plan or one line naming the
option (exit code 2), before anything is written."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idsuite.cli.errors import CliError
from idsuite.cli.main import build_parser, main
from idsuite.cli.run import RunPlan, validate

OPTIONS = ["--batch-size", "--max-tokens", "--max-sequences", "--seed", "--device", "--dtype", "--attribution-method",
           "--attribution-probes", "--attribution-sequences", "--attribution-max-tokens", "--mixing-max-tokens",
           "--mixing-sequences", "--mixing-target", "--feasible-sequences", "--feasible-rows", "--feasible-max-tokens",
           "--mlp-epochs", "--backend", "--address", "--corpus", "--text-column", "--models"]
values = st.one_of(st.integers(-5, 10**7).map(str), st.sampled_from(["auto", "cpu", "cuda", "cuda:3", "exact", "ray",
                                                                    "float16", "lee", "default", ""]),
                   st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30))
ZOO = "models:\n  - {id: tiny, source: hub, tags: [default]}\n"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(OPTIONS), values, max_size=5))
def test_any_option_values_give_a_plan_or_one_line_and_write_nothing(options):
    with tempfile.TemporaryDirectory() as folder:
        zoo, results = Path(folder) / "models.yaml", Path(folder) / "results"
        zoo.write_text(ZOO)
        argv = ["run", "--zoo", str(zoo), "--results", str(results)]
        for option, value in options.items():
            argv += [option, value] if not value.startswith("-") else [f"{option}={value}"]
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                args = build_parser().parse_args(argv)
            except SystemExit as e:
                assert e.code == 2 and len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
                return
        try:
            plan = validate(args)
        except CliError as e:
            assert "\n" not in str(e) and len(str(e)) <= 300, str(e)
            assert str(e).startswith(("--", str(zoo), "corpus")) or "Ray" in str(e), str(e)
        else:
            assert isinstance(plan, RunPlan)
        assert not results.exists()


def test_bad_options_end_before_the_run_header(tmp_path, capsys):
    zoo = tmp_path / "models.yaml"
    zoo.write_text(ZOO)
    for bad in (["--batch-size", "0"], ["--device", "cuda:99"], ["--attribution-method", "exactt"], ["--batch-size", "x"]):
        try:
            code = main(["run", "--zoo", str(zoo), "--results", str(tmp_path / "r"), *bad])
        except SystemExit as e:  # argparse's own errors (not an int, ...)
            code = e.code
        assert code == 2, bad
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.strip().splitlines()) == 1, (bad, captured.err)
        assert "http" not in captured.err and not (tmp_path / "r").exists()
