"""The packages' import graph: data flows one way, and the read side never loads torch.

suite (maths and declarations) <- runners (load, trace, write) and results (store, schema,
selection) <- leaderboard (reads results) <- cli (above all). No edge from results upward, none
between runners and leaderboard.
"""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("suite", "runners", "results", "leaderboard", "cli")
ALLOWED = {
    "suite": {"suite"},
    "results": {"results", "suite"},
    "runners": {"runners", "results", "suite"},
    "leaderboard": {"leaderboard", "results", "suite"},
    "cli": set(PACKAGES),
}


def imports_of(package: str) -> dict[str, set[str]]:
    """For each module file of ``package``, the project packages it imports (anywhere in the file)."""
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        out[str(path.relative_to(ROOT))] = names & set(PACKAGES)
    return out


def test_imports_follow_the_layers():
    for package in PACKAGES:
        for module, imported in imports_of(package).items():
            assert imported <= ALLOWED[package], f"{module} imports {sorted(imported - ALLOWED[package])}"


def test_read_side_and_help_import_no_torch():
    code = (
        "import sys\n"
        "import leaderboard.data, leaderboard.export, results.query, results.selection, results.summary\n"
        "import cli.main, cli.listing, cli.board\n"
        "cli.main.build_parser().format_help()\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_every_option_has_help():
    from cli.main import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name, sub in commands.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"idsuite {name} {action.option_strings or action.dest}: no help text"


def test_the_docs_describe_every_stored_column_and_metric():
    from results.schema import NAMES
    from suite.specs import SPECS

    results = (ROOT / "docs" / "results.md").read_text()
    assert [name for name in NAMES if f"`{name}`" not in results] == []
    metrics = (ROOT / "docs" / "metrics.md").read_text()
    assert [name for name in SPECS if f"(`{name}`" not in metrics] == []
