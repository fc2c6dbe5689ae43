"""Mistakes at the command line that used to end in a traceback or in silence: integer options
past 64 bits, ``export --out`` onto a file or an unwritable folder, a duplicate id in the zoo."""

from __future__ import annotations

import errno

import pytest

from idsuite.cli.main import main
from tests.filesystem import refused_writes
from tests.results.conftest import cell_frame


def exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own errors
        return int(e.code)


@pytest.mark.parametrize("option", ["--seed", "--max-sequences", "--mlp-epochs", "--mixing-sequences",
                                    "--attribution-sequences", "--batch-map-elements"])
def test_an_integer_option_past_64_bits_is_one_line_where_it_is_parsed(tmp_path, capsys, option):
    zoo = tmp_path / "models.yaml"
    zoo.write_text("models:\n  - {id: tiny, source: hub, tags: [default]}\n")
    argv = ["run", "--zoo", str(zoo), "--results", str(tmp_path / "r"), option, str(1 << 63)]
    assert exit_code(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: idsuite run: argument {option}: {1 << 63} does not fit in 64 bits (see idsuite run --help)"
    assert not (tmp_path / "r").exists()


@pytest.fixture
def results(tmp_path):
    from idsuite.results.store import ResultStore

    store = ResultStore(tmp_path / "results")
    store.write(*cell_frame("m"))
    return store.root


def test_export_onto_a_file_or_an_unwritable_folder_is_one_line(tmp_path, results, capsys):
    a_file = tmp_path / "paper.pdf"
    a_file.write_text("not a folder")
    assert exit_code(["export", "--results", str(results), "--out", str(a_file)]) == 2
    assert capsys.readouterr().err == f"error: --out: {str(a_file)!r} is a file, not a folder\n"
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    with refused_writes(read_only, errno.EROFS):  # root ignores permissions: the kernel's error is injected
        assert exit_code(["export", "--results", str(results), "--out", str(read_only)]) == 2
    assert capsys.readouterr().err == f"error: --out: cannot write into {str(read_only)!r}: Read-only file system\n"
    under_a_file = a_file / "figures"  # a real one: a path through a file
    assert exit_code(["export", "--results", str(results), "--out", str(under_a_file)]) == 2
    assert capsys.readouterr().err == f"error: --out: cannot write into {str(under_a_file)!r}: Not a directory\n"


def test_a_duplicate_id_fails_with_a_line_naming_both_entries(tmp_path, capsys):
    zoo = tmp_path / "models.yaml"
    zoo.write_text("models:\n  - {id: m, source: hub, repo: org/one}\n  - {id: m, source: hub, repo: org/two}\n")
    assert exit_code(["list", "--zoo", str(zoo), "--results", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert err == (f"error: {zoo}: entry #1 ('m'): duplicate id: entries #1 and #2 are all named 'm' (rename all but "
                   "one)\n")
