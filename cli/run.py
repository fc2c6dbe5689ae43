"""``idsuite run``: the battery over the selected zoo models, then one table per metric.

Every option is checked before anything runs or is written: a mistake is one line naming the
option, with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path

import pydantic

from idsuite.cli.errors import CliError
from idsuite.cli.main import INTERRUPTED, METRIC_OPTIONS
from idsuite.cli.run_report import run_notes, run_tables
from idsuite.cli.tables import fit, terminal_width
from idsuite.results.labels import INTERVAL_MEANING
from idsuite.results.query import ResultQuery
from idsuite.results.selection import with_settings
from idsuite.results.store import CellRef, ResultStore
from idsuite.runners.failures import RunInterrupted
from idsuite.runners.jobs import ModelOutcome, Runner
from idsuite.runners.models.hub import COMMIT
from idsuite.runners.models.zoo import Zoo, ZooFileError, load_zoo
from idsuite.runners.probing.corpus import Corpus, CorpusError, CorpusSpec, load_corpus
from idsuite.runners.run_config import RunConfig
from idsuite.suite.registry import RegistryError
from idsuite.suite.specs import SPECS

RUN_OPTIONS = {"metrics": "--metrics", "seed": "--seed", "batch_size": "--batch-size", "batch_map_elements": "--batch-map-elements",
               "max_tokens": "--max-tokens", "device": "--device", "dtype": "--dtype"}
CORPUS_OPTIONS = {"source": "--corpus", "max_sequences": "--max-sequences", "text_column": "--text-column",
                  "pair_column": "--pair-column", "split": "--split", "config": "--corpus-config"}


@dataclass(frozen=True)
class RunPlan:
    """What ``idsuite run`` was asked to do, validated."""

    zoo: Zoo
    models: list[str]
    corpus: CorpusSpec
    config: RunConfig
    store: ResultStore


def _metric_overrides(args: argparse.Namespace) -> dict[str, dict[str, int | str]]:
    """Metric config overrides for the options given on the command line."""
    overrides: dict[str, dict[str, int | str]] = {}
    for option, (metric, key, _, _) in METRIC_OPTIONS.items():
        if getattr(args, option) is not None:
            overrides.setdefault(metric, {})[key] = getattr(args, option)
    return overrides


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _option_error(e: pydantic.ValidationError, options: dict[str, str]) -> CliError:
    """The first error of a settings model as one line naming the command-line option."""
    err = e.errors()[0]
    field = next((str(p) for p in reversed(err["loc"]) if str(p) in options), None)
    name = options.get(field, ".".join(map(str, err["loc"])) or "option")
    message = str(err["ctx"]["error"]) if err["type"] == "value_error" else err["msg"].lower()
    got = "" if err["type"] == "value_error" else f" (got {_shown(err['input'])})"
    return CliError(f"{name}: {message}{got}")


def validate(args: argparse.Namespace) -> RunPlan:
    """Every option of ``idsuite run`` checked, before anything runs; ``CliError`` names the first
    bad one."""
    try:
        zoo = load_zoo(args.zoo)
    except ZooFileError as e:
        raise CliError(str(e)) from None
    selected, unknown = zoo.select(args.models)
    if unknown:
        raise CliError(f"{args.zoo}: no entry or tag named {', '.join(map(_shown, unknown))}")
    try:
        corpus = CorpusSpec(source=args.corpus, config=args.corpus_config, split=args.split,
                            text_column=args.text_column, pair_column=args.pair_column,
                            max_sequences=args.max_sequences, seed=args.seed)
    except pydantic.ValidationError as e:
        raise _option_error(e, CORPUS_OPTIONS | {"seed": "--seed"}) from None
    overrides = _metric_overrides(args)
    for metric, values in overrides.items():
        options = {key: f"--{option.replace('_', '-')}" for option, (m, key, _, _) in METRIC_OPTIONS.items() if m == metric}
        try:
            SPECS.get(metric).config_type(**values)
        except pydantic.ValidationError as e:
            raise _option_error(e, options) from None
    try:
        config = RunConfig(seed=args.seed, batch_size=args.batch_size, batch_map_elements=args.batch_map_elements,
                           max_tokens=args.max_tokens,
                           device=args.device, dtype=args.dtype, recompute=args.recompute, metric_settings=overrides,
                           metrics=args.metrics)
        config.metric_configs()
    except pydantic.ValidationError as e:
        raise _option_error(e, RUN_OPTIONS) from None
    except RegistryError as e:
        raise CliError(str(e)) from None
    try:
        config.check_device()
    except ValueError as e:
        raise CliError(str(e)) from None
    if args.address is not None and args.backend != "ray":
        raise CliError("--address: only with --backend ray")
    if args.backend == "ray" and importlib.util.find_spec("ray") is None:
        raise CliError("--backend ray: Ray is not installed (pip install -e \".[ray]\")")
    results = Path(args.results)
    if results.exists() and not results.is_dir():
        raise CliError(f"--results: {str(results)!r} is a file, not a folder")
    return RunPlan(zoo, selected, corpus, config, ResultStore(results))


def _stale_replaced(query: ResultQuery, plan: dict[tuple[str, int | None], list[CellRef]]) -> int:
    """How many of the cells to compute replace a stored cell of an older metric version."""
    cells = with_settings(query.cells())
    stale = set(zip(cells.loc[cells["stale"], "model_id"], cells.loc[cells["stale"], "metric"], strict=True))
    return sum((ref.model_id, ref.metric) in stale for refs in plan.values() for ref in refs)


def _moved(query: ResultQuery, runner: Runner, todo: dict[tuple[str, int | None], list[CellRef]]) -> list[str]:
    """One line per hub model with cells to compute whose branch (or tag) now resolves to another
    commit than its newest stored cells were computed at: new cells are computed, the old ones
    superseded."""
    cells = query.cells()
    cells = cells[cells["model_commit"].notna()].sort_values("written") if len(cells) else cells
    lines = []
    for model_id in dict.fromkeys(m for (m, _), refs in todo.items() if refs):
        commit = runner.cells.commits.get(model_id)
        entry = runner.zoo.entries[model_id]
        hub_entry = runner.zoo.entries.get(getattr(entry, "base", ""), entry)
        revision = getattr(hub_entry, "revision", None)
        stored = cells.loc[cells["model_id"] == model_id, "model_commit"] if len(cells) else []
        if commit is None or revision is None or COMMIT.fullmatch(revision) or not len(stored) or stored.iloc[-1] == commit:
            continue
        lines.append(f"{model_id}: revision {revision!r} has moved to commit {commit[:12]} (its cells were computed at "
                     f"{stored.iloc[-1][:12]}): computing new cells; the old ones are superseded")
    return lines


def _load_corpus(spec: CorpusSpec) -> Corpus:
    try:
        return load_corpus(spec)
    except CorpusError as e:
        raise CliError(str(e)) from None


def _interrupted(signum: int, frame: object) -> None:
    raise RunInterrupted


def run_command(args: argparse.Namespace) -> int:
    """``idsuite run``. A Ctrl-C from the user (SIGINT) stops the run with one line and exit code
    130, its leases released and every finished cell kept; a ``KeyboardInterrupt`` that a model's
    own code raises is only that model's failure (``idsuite.runners.failures.RunInterrupted``)."""
    previous = signal.signal(signal.SIGINT, _interrupted)
    try:
        return _run(args)
    except RunInterrupted:
        print("\ninterrupted: the run stopped (Ctrl-C); finished cells are kept and its leases released; "
              "the same command goes on from there", file=sys.stderr)
        return INTERRUPTED
    finally:
        signal.signal(signal.SIGINT, previous)


def _run(args: argparse.Namespace) -> int:
    plan = validate(args)
    corpus = _load_corpus(plan.corpus)
    store, query = plan.store, ResultQuery(plan.store)
    run_id = uuid.uuid4().hex[:12]
    runner = Runner(plan.zoo, corpus, plan.config, store, run_id)
    todo = runner.plan(plan.models)
    print(f"run {run_id}: {len(plan.models)} model(s), corpus {corpus.corpus_id} ({len(corpus.items)} items, "
          f"hash {corpus.content_hash}), results in {store.root.resolve()}")
    print(f"{sum(len(refs) for refs in todo.values())} cell(s) to compute, {_stale_replaced(query, todo)} of them "
          "replacing stale cells (written by an older metric version)")
    for line in _moved(query, runner, todo):
        print(line)
    if args.backend == "ray":
        from idsuite.runners.distributed import run_on_ray

        outcomes = run_on_ray(runner, plan.models, args.address)
    else:
        outcomes = runner.run(plan.models)
    rows = query.summary_rows([r for o in outcomes for r in o.refs()])  # this configuration's cells only
    if shown := run_tables(rows):
        print(f"\n{textwrap.fill(INTERVAL_MEANING, terminal_width())}")
    for title, table in shown:
        head, *legend = title.splitlines()
        lines = [textwrap.fill(line, terminal_width(), subsequent_indent="      ") for line in legend]
        print("\n".join([f"\n== {head}", *lines, fit(table)]))
    notes = run_notes(rows)
    if notes:
        print("\n== Data and fits (values above: mean ± half the 95% interval)")
        print("\n".join(textwrap.fill(line, terminal_width(), subsequent_indent="    ") for line in notes))
    failed = [o for o in outcomes if o.failed]
    print(f"\nParquet cells: {store.cells.resolve()}")
    print(f"{len(outcomes) - len(failed)} model(s) complete, {len(failed)} with failures")
    causes: dict[tuple[str, str], list[ModelOutcome]] = {}  # a control's seeds failing alike: one line
    for o in failed:
        causes.setdefault((o.model_id, next(iter(o.failed.values()))), []).append(o)
    for (model_id, cause), alike in causes.items():
        label = alike[0].label if len(alike) == 1 else f"{model_id} ({len(alike)} init seeds)"
        print(f"  {label}: {cause}")
    return 1 if failed else 0
