"""The Ray backend: one task per model (each init seed of a control is one), on a Ray cluster whose
machines share the store's folder and the zoo file (a network file system, mounted at the same path
everywhere).

A task loads its model and runs every pending metric on it (they share the forward passes), writing
its cells into the same store, with the same schema, as the local backend. Its resources: one CPU,
a GPU when the run uses CUDA, and memory estimated from the weights' parameter count and the
forward dtype. A task whose worker process dies is retried a bounded number of times; a retry takes
back its own leases at once (same run), and failures inside a model's work are failed rows, never
retried. Ray is an optional extra (``pip install -e ".[ray]"``); the local backend needs none.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from idsuite.results.identity import UNIDENTIFIED
from idsuite.runners.jobs import ModelOutcome, Runner
from idsuite.runners.models.hub import pinned
from idsuite.runners.models.weights import parameter_count
from idsuite.runners.probing.corpus import Corpus

MAX_RETRIES = 2
"""How often a task whose worker died is run again."""
BYTES_PER_WEIGHT = {"float32": 4, "bfloat16": 2, "float16": 2}
MEMORY_FACTOR = 4
"""A model's memory: its weights, activations and the metrics' work, taken as this many times the
weights, plus ``BASE_MEMORY``."""
BASE_MEMORY = 1 << 30
UNKNOWN_MEMORY = 4 << 30
"""Memory asked for when the parameter count cannot be read here (hub entries)."""


@dataclass(frozen=True)
class TaskSpec:
    """What a task needs to rebuild the run's ``Runner`` in its worker (plain data)."""

    zoo_path: str
    corpus_id: str
    corpus_items: list[tuple[str, str | None]]
    config: str
    store_root: str
    run_id: str
    commits: tuple[tuple[str, str, str, str], ...] = ()
    """(repo, revision, kind, commit) of every hub revision the run resolved (``hub.pinned``)."""


def run_model_task(spec: TaskSpec, model_id: str, init_seed: int | None) -> dict[str, Any]:
    """In a Ray worker: one model's pending cells into the shared store; the ``ModelOutcome`` as a dict."""
    from idsuite.results.store import ResultStore
    from idsuite.runners.models.hub import pin
    from idsuite.runners.models.zoo import load_zoo
    from idsuite.runners.run_config import RunConfig

    pin({(repo, revision, kind): commit for repo, revision, kind, commit in spec.commits})

    runner = Runner(load_zoo(spec.zoo_path), Corpus(spec.corpus_id, [tuple(i) for i in spec.corpus_items]),
                    RunConfig.model_validate_json(spec.config), ResultStore(spec.store_root), spec.run_id,
                    log=lambda line: None)
    with runner.leases:
        return dataclasses.asdict(runner.run_model(model_id, init_seed))


def task_memory(runner: Runner, model_id: str) -> int:
    """Bytes of memory to reserve for a model's task (see ``MEMORY_FACTOR``)."""
    entry = runner.zoo.entries.get(model_id)
    weights = parameter_count(entry, runner.zoo) if entry is not None else None
    if weights is None:
        return UNKNOWN_MEMORY
    dtype = runner.config.forward_dtype(entry.dtype)
    return BASE_MEMORY + MEMORY_FACTOR * weights * BYTES_PER_WEIGHT.get(dtype, 4)


def run_on_ray(runner: Runner, model_ids: list[str], address: str | None = None) -> list[ModelOutcome]:
    """Every model of ``model_ids`` as a Ray task on the cluster at ``address`` (``auto``: the one
    this machine belongs to; None: a new local one), with progress shown here. A task that still
    fails after ``MAX_RETRIES`` (its worker died each time) is recorded as failed rows."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, log_to_driver=False, runtime_env={"env_vars": {"TQDM_DISABLE": "1"}},
                 include_dashboard=False, configure_logging=False)
    try:
        spec = ray.put(TaskSpec(str(runner.zoo.path.resolve()), runner.corpus.corpus_id, runner.corpus.items,
                                runner.config.model_dump_json(), str(runner.store.root.resolve()), runner.run_id,
                                tuple((*key, commit) for key, commit in pinned().items())))
        gpus = 1 if runner.config.device.startswith("cuda") or (
            runner.config.device == "auto" and ray.cluster_resources().get("GPU", 0) > 0) else 0
        task = ray.remote(run_model_task)
        futures = {}
        for model_id, seed in runner.subjects(model_ids):
            options = {"num_cpus": 1, "num_gpus": gpus, "memory": task_memory(runner, model_id),
                       "max_retries": MAX_RETRIES, "retry_exceptions": False, "name": f"idsuite:{model_id}"}
            futures[task.options(**options).remote(spec, model_id, seed)] = (model_id, seed)
        outcomes: dict[tuple[str, int | None], ModelOutcome] = {}
        pending = list(futures)
        with tqdm(total=len(pending), desc="models on ray", unit="model", file=sys.stderr) as progress:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                model_id, seed = futures[done[0]]
                try:
                    outcome = ModelOutcome(**ray.get(done[0]))
                except ray.exceptions.RayError as e:  # the worker died more often than it was retried
                    outcome = ModelOutcome(model_id, seed)
                    message = f"ray task failed after {MAX_RETRIES} retries: {type(e).__name__}"
                    runner.fail_model(outcome, list(runner.metric_configs), message, UNIDENTIFIED)
                outcomes[(model_id, seed)] = outcome
                progress.update()
                runner.log(f"  {outcome.label}: {len(outcome.computed)} computed, {len(outcome.cached)} cached, "
                           f"{len(outcome.failed)} failed")
        ordered = [outcomes[s] for s in runner.subjects(model_ids)]
        with runner.leases:
            runner.wait_for_others(ordered)
        return ordered
    finally:
        if started:
            ray.shutdown()

