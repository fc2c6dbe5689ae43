"""``idsuite``: run the battery over the zoo (``run``) and show the zoo (``list``)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pydantic

from runners.corpus import CorpusError, CorpusSpec, load_corpus
from runners.jobs import RunConfig, Runner
from runners.loading import ModelLoadError, fingerprint
from runners.store import ResultStore
from runners.summary import summary_tables
from runners.zoo import ZooFileError, load_zoo
from suite.metrics import METRICS
from suite.registry import RegistryError

METRIC_OPTIONS = {  # command-line option -> (metric, config key, help, type)
    "attribution_method": ("hidden_token_attribution", "method", "'exact' or 'estimate' Jacobian norms", str),
    "attribution_probes": ("hidden_token_attribution", "probes", "probe directions per token (estimate)", int),
    "attribution_sequences": ("hidden_token_attribution", "max_sequences", "sequences for attribution", int),
    "attribution_max_tokens": ("hidden_token_attribution", "max_tokens", "longest sequence for attribution", int),
    "mlp_steps": ("token_identifiability", "mlp_steps", "training steps of the MLP mapping g", int),
}


LIST_FACTS = ["n_params", "n_layers", "n_heads", "n_kv_heads", "d_head"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="idsuite", description="Identifiability in transformers, as a benchmark.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the battery on zoo models (default: the 'default' tag)")
    run.add_argument("--zoo", default="models.yaml", help="model zoo file (default: models.yaml)")
    run.add_argument("--models", nargs="+", help="entry ids or tags ('default', 'all-offline', 'packaged', 'control', 'hub', 'all', ...)")
    run.add_argument("--results", default="results", help="result store folder (default: results)")
    run.add_argument("--corpus", default="lee", help="'lee' (packaged), 'mrpc' (hub), a hub dataset id or a local file")
    run.add_argument("--corpus-config", default=None, help="dataset config name (hub datasets)")
    run.add_argument("--split", default="train")
    run.add_argument("--text-column", default="text")
    run.add_argument("--pair-column", default=None)
    run.add_argument("--max-sequences", type=int, default=200, help="probe sequences per model (default 200)")
    run.add_argument("--max-tokens", type=int, default=128, help="longest sequence kept (default 128)")
    run.add_argument("--batch-size", type=int, default=16)
    for option, (metric, key, text, kind) in METRIC_OPTIONS.items():  # None keeps the metric config's default
        default = METRICS.get(metric).spec.config_type.model_fields[key].default
        run.add_argument(f"--{option.replace('_', '-')}", type=kind, help=f"{text} (default {default})")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--device", default="auto", help="'auto' (cuda where present, else cpu), 'cpu', 'cuda', 'cuda:1'")
    run.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                     help="forward-pass dtype; 'auto': bfloat16 on a GPU, the entry's dtype on the CPU")
    run.add_argument("--recompute", action="store_true", help="recompute cells that are already finished")
    lst = sub.add_parser("list", help="show the zoo entries and any bad ones")
    lst.add_argument("--zoo", default="models.yaml")
    lst.add_argument("--results", default="results", help="show sizes read from the configs of models already run")
    board = sub.add_parser("leaderboard", help="browse the results in a Streamlit app")
    board.add_argument("--results", default="results", help="result store folder (default: results)")
    board.add_argument("--port", type=int, default=8501)
    export = sub.add_parser("export", help="write the main table (LaTeX) and per-layer figures (PNG, PDF); per metric, the configuration most models have")
    export.add_argument("--results", default="results", help="result store folder (default: results)")
    export.add_argument("--out", default="paper", help="output folder (default: paper)")
    return parser


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    import leaderboard

    app = Path(leaderboard.__file__).resolve().parent / "app.py"
    env = dict(os.environ, IDSUITE_RESULTS=str(Path(args.results).resolve()))
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(args.port),
               "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    return subprocess.call(command, env=env)


def _cmd_export(args: argparse.Namespace) -> int:
    from leaderboard.data import load_results, select_cells
    from leaderboard.export import export

    results = select_cells(load_results(args.results))
    if results.empty:
        print(f"error: no results in {args.results!r} (run `idsuite run` first)", file=sys.stderr)
        return 2
    for path in export(results, Path(args.out)):
        print(path)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    zoo = load_zoo(args.zoo)
    rows = []
    for entry_id, entry in zoo.entries.items():
        try:
            weights = fingerprint(entry, zoo)
        except ModelLoadError as e:
            weights = f"unavailable: {e}"
        rows.append({"id": entry_id, "source": entry.source, "family": entry.family or "", "tags": ",".join(entry.tags),
                     "weights": weights})
    table = pd.DataFrame(rows)
    stored = ResultStore(args.results).read()
    if rows and not stored.empty:  # sizes as read from each model's config when it last ran
        facts = stored[stored["status"] == "ok"].groupby("model_id")[LIST_FACTS].first().astype("Int64")
        table = table.join(facts, on="id")
    print(table.to_string(index=False, na_rep="") if rows else "(no valid entries)")
    for error in zoo.errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if zoo.errors else 0




def _metric_overrides(args: argparse.Namespace) -> dict[str, dict[str, int | str]]:
    """Metric config overrides for the options given on the command line."""
    overrides: dict[str, dict[str, int | str]] = {}
    for option, (metric, key, _, _) in METRIC_OPTIONS.items():
        if getattr(args, option) is not None:
            overrides.setdefault(metric, {})[key] = getattr(args, option)
    return overrides


def _cmd_run(args: argparse.Namespace) -> int:
    zoo = load_zoo(args.zoo)
    selected, unknown = zoo.select(args.models)
    if unknown:
        print(f"error: {args.zoo}: no entry or tag named {', '.join(map(repr, unknown))}", file=sys.stderr)
        return 2
    spec = CorpusSpec(source=args.corpus, config=args.corpus_config, split=args.split, text_column=args.text_column,
                      pair_column=args.pair_column, max_sequences=args.max_sequences, seed=args.seed)
    corpus = load_corpus(spec)
    config = RunConfig(
        seed=args.seed, batch_size=args.batch_size, max_tokens=args.max_tokens, device=args.device, dtype=args.dtype,
        recompute=args.recompute,
        metrics=_metric_overrides(args),
    )
    store = ResultStore(args.results)
    run_id = uuid.uuid4().hex[:12]
    print(f"run {run_id}: {len(selected)} model(s), corpus {corpus.corpus_id} ({len(corpus.items)} items, "
          f"hash {corpus.content_hash}), results in {Path(args.results).resolve()}")
    outcomes = Runner(zoo, corpus, config, store, run_id).run(selected)
    results = store.read()
    results = results[results["cell_key"].isin({key for o in outcomes for key in o.keys.values()})]  # this configuration
    for title, table in summary_tables(results):
        print(f"\n== {title}\n{table.to_string()}")
    failed = [o for o in outcomes if o.failed]
    print(f"\nParquet cells: {(Path(args.results) / 'cells').resolve()}")
    print(f"{len(outcomes) - len(failed)} model(s) complete, {len(failed)} with failures")
    for o in failed:
        print(f"  {o.model_id}: {next(iter(o.failed.values()))}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        commands = {"run": _cmd_run, "list": _cmd_list, "leaderboard": _cmd_leaderboard, "export": _cmd_export}
        return commands[args.command](args)
    except (ZooFileError, CorpusError, RegistryError, pydantic.ValidationError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
