"""The import graph under the one ``idsuite`` namespace: data flows one way, and the read side never
loads torch.

suite (maths and declarations) <- runners.models (zoo, weights, loading, adapters) <- runners.probing
(corpora, tracing) <- runners (orchestration), and results (store, schema, selection) <- leaderboard
(reads results) <- cli and the package root (``api/``, the Python API) above all. No edge from
results upward, none between runners and leaderboard, none from model access or probing up into
the orchestration.
"""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# layer -> (its folder in the repository, the layers it may import); a module belongs to the most
# specific layer whose folder holds it; runners.failures (one line of cause) is shared by all runners
LAYERS = {
    "suite": ("suite", {"suite"}),
    "results": ("results", {"results", "suite"}),
    "runners.models": ("runners/models", {"runners.models", "runners.failures", "results", "suite"}),
    "runners.probing": ("runners/probing", {"runners.probing", "runners.models", "runners.failures", "suite"}),
    "runners": ("runners", {"runners", "runners.models", "runners.probing", "runners.failures", "results", "suite"}),
    "leaderboard": ("leaderboard", {"leaderboard", "results", "suite"}),
    "cli": ("cli", {"cli", "runners", "runners.models", "runners.probing", "runners.failures", "results", "leaderboard", "suite",
                    "root"}),
    "root": ("api", {"root", "runners", "runners.models", "runners.probing", "runners.failures", "results", "leaderboard", "suite"}),
}


def layer_of(module: str) -> str | None:
    """The layer of an ``idsuite...`` module name (``root`` for the package itself)."""
    if module == "idsuite":
        return "root"
    if not module.startswith("idsuite."):
        return None
    parts = module.split(".")[1:]
    for depth in (2, 1):
        name = ".".join(parts[:depth])
        if name in LAYERS or name == "runners.failures":
            return name
    return "root"  # a module of the package root (idsuite.evaluate, ...)


def imports_of(layer: str) -> dict[str, set[str]]:
    """For each module file of ``layer``'s folder (not of a deeper layer's), the layers it imports."""
    folder = ROOT / LAYERS[layer][0]
    deeper = [ROOT / f for name, (f, _) in LAYERS.items() if name != layer and (ROOT / f).is_relative_to(folder)]
    out = {}
    for path in sorted(folder.rglob("*.py")):
        if any(path.is_relative_to(d) for d in deeper):
            continue
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        out[str(path.relative_to(ROOT))] = {layer_of(n) for n in names} - {None}
    return out


def test_imports_follow_the_layers():
    assert set(imports_of("runners")), "no module found: the layer folders moved?"
    for layer, (_, allowed) in LAYERS.items():
        for module, imported in imports_of(layer).items():
            assert imported <= allowed, f"{module} imports {sorted(imported - allowed)}"


def test_the_old_top_level_names_are_gone():
    """No module imports the pre-namespace names (``suite``, ``runners``, ...) any more."""
    old = {"suite", "runners", "results", "leaderboard", "cli", "api"}
    for path in sorted(ROOT.glob("*/**/*.py")):
        if ".venv" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            assert not [n for n in names if n.split(".")[0] in old], f"{path.relative_to(ROOT)} imports {names}"


def test_read_side_and_help_import_no_torch():
    code = (
        "import sys\n"
        "import idsuite.leaderboard.data, idsuite.leaderboard.export\n"
        "import idsuite.results.query, idsuite.results.selection, idsuite.results.headlines\n"
        "import idsuite.cli.main, idsuite.cli.listing, idsuite.cli.board\n"
        "idsuite.cli.main.build_parser().format_help()\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_every_option_has_help():
    from idsuite.cli.main import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name, sub in commands.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"idsuite {name} {action.option_strings or action.dest}: no help text"


def test_the_docs_describe_every_stored_column_and_metric():
    from idsuite.results.schema import NAMES
    from idsuite.suite.specs import SPECS

    results = (ROOT / "docs" / "results.md").read_text()
    assert [name for name in NAMES if f"`{name}`" not in results] == []
    metrics = (ROOT / "docs" / "metrics.md").read_text()
    assert [name for name in SPECS if f"(`{name}`" not in metrics] == []
    from idsuite.suite.specs.context_mixing import MEASURES

    assert [m.name for m in MEASURES if f"- `{m.name}`" not in metrics] == []  # each measure's definition
