"""``idsuite run``: the battery over the selected zoo models, then one table per metric."""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

import pydantic

from cli.errors import CliError
from cli.main import METRIC_OPTIONS
from cli.tables import fit
from results.query import ResultQuery
from results.selection import with_settings
from results.store import CellRef, ResultStore
from results.summary import run_tables
from runners.corpus import CorpusError, CorpusSpec, load_corpus
from runners.jobs import RunConfig, Runner
from runners.zoo import ZooFileError, load_zoo
from suite.registry import RegistryError


def _metric_overrides(args: argparse.Namespace) -> dict[str, dict[str, int | str]]:
    """Metric config overrides for the options given on the command line."""
    overrides: dict[str, dict[str, int | str]] = {}
    for option, (metric, key, _, _) in METRIC_OPTIONS.items():
        if getattr(args, option) is not None:
            overrides.setdefault(metric, {})[key] = getattr(args, option)
    return overrides


def _stale_replaced(query: ResultQuery, plan: dict[str, list[CellRef]]) -> int:
    """How many of the cells to compute replace a stored cell of an older metric version."""
    cells = with_settings(query.cells())
    stale = set(zip(cells.loc[cells["stale"], "model_id"], cells.loc[cells["stale"], "metric"], strict=True))
    return sum((ref.model_id, ref.metric) in stale for refs in plan.values() for ref in refs)


def run_command(args: argparse.Namespace) -> int:
    try:
        zoo = load_zoo(args.zoo)
        selected, unknown = zoo.select(args.models)
        if unknown:
            raise CliError(f"{args.zoo}: no entry or tag named {', '.join(map(repr, unknown))}")
        spec = CorpusSpec(source=args.corpus, config=args.corpus_config, split=args.split, text_column=args.text_column,
                          pair_column=args.pair_column, max_sequences=args.max_sequences, seed=args.seed)
        config = RunConfig(seed=args.seed, batch_size=args.batch_size, max_tokens=args.max_tokens, device=args.device,
                           dtype=args.dtype, recompute=args.recompute, metrics=_metric_overrides(args))
        config.metric_configs()
        corpus = load_corpus(spec)
    except (ZooFileError, CorpusError, RegistryError, pydantic.ValidationError) as e:
        raise CliError(str(e).splitlines()[0]) from None
    store = ResultStore(args.results)
    query = ResultQuery(store)
    run_id = uuid.uuid4().hex[:12]
    runner = Runner(zoo, corpus, config, store, run_id)
    plan = runner.plan(selected)
    pending = sum(len(refs) for refs in plan.values())
    print(f"run {run_id}: {len(selected)} model(s), corpus {corpus.corpus_id} ({len(corpus.items)} items, "
          f"hash {corpus.content_hash}), results in {Path(args.results).resolve()}")
    print(f"{pending} cell(s) to compute, {_stale_replaced(query, plan)} of them replacing stale cells "
          "(written by an older metric version)")
    outcomes = runner.run(selected)
    refs = [CellRef(o.model_id, metric, key) for o in outcomes for metric, key in o.keys.items()]
    rows = query.summary_rows(refs)  # this configuration's cells only (the store may hold others)
    for title, table in run_tables(rows):
        print(f"\n== {title}\n{fit(table)}")
    failed = [o for o in outcomes if o.failed]
    print(f"\nParquet cells: {store.cells.resolve()}")
    print(f"{len(outcomes) - len(failed)} model(s) complete, {len(failed)} with failures")
    for o in failed:
        print(f"  {o.model_id}: {next(iter(o.failed.values()))}")
    return 1 if failed else 0
