"""The job loop: every selected model (each init seed of a control), every pending metric cell, one
forward pass per batch. What a cell is and how it is written is ``idsuite.runners.cells``; getting a
model ready, ``idsuite.runners.preparation``; cutting batches, ``idsuite.runners.batching``.

Nothing that goes wrong inside one model's work stops the run: it becomes failed rows with one line
of cause (``idsuite.runners.failures``) and the next model goes on. That includes the model's own
code exiting or raising ``KeyboardInterrupt`` and the store failing under one cell (a read-only or
full file system, a name too long): such a cell is failed in the outcome and the log, and in the
store when the store can still take a row. Only the user's Ctrl-C (``RunInterrupted``) ends a run.
Each cell about to be computed is leased (``idsuite.results.leases``), so that concurrent runs on one
store compute it once; cells another run is computing are waited for at the end (and taken over if
that run dies).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from tqdm.auto import tqdm

from idsuite.results.identity import UNIDENTIFIED
from idsuite.results.leases import Leases
from idsuite.results.store import CellRef, ResultStore
from idsuite.runners.batching import length_batches
from idsuite.runners.cells import CellWriter, ModelOutcome
from idsuite.runners.failures import MODEL_FAULTS, ModelFailure, one_line
from idsuite.runners.models.weights import fingerprint, model_commit
from idsuite.runners.models.zoo import RandomInitEntry, Zoo
from idsuite.runners.preparation import prepare_model
from idsuite.runners.probing.corpus import Corpus
from idsuite.runners.run_config import RunConfig
from idsuite.suite.metrics import metric_class
from idsuite.suite.metrics.base import Metric
from idsuite.suite.trace import BatchTrace

__all__ = ["ModelOutcome", "Runner"]


class _Stage:
    """Where a model's work is, for the failure line ("load", "batch 3 of 13", "metric finish")."""

    def __init__(self) -> None:
        self.name = ""


def _each(metrics: dict[str, Metric], outcome: ModelOutcome, where: str, call: Callable[[Metric], None]) -> None:
    """``call`` on every metric; one that raises is recorded as failed (naming ``where``) and dropped,
    and the others go on."""
    for name in list(metrics):
        try:
            call(metrics[name])
        except Exception as e:  # noqa: BLE001  (a metric that breaks is recorded; the others go on)
            outcome.failed[name] = one_line(e, f"{name} on {where}")
            del metrics[name]


class Runner:
    """Runs the battery for many models into one store; a failing model is recorded and skipped."""

    def __init__(self, zoo: Zoo, corpus: Corpus, config: RunConfig, store: ResultStore, run_id: str,
                 log: Callable[[str], None] = print, poll_seconds: float = 2.0) -> None:
        self.zoo, self.corpus, self.config, self.store, self.run_id, self.log = zoo, corpus, config, store, run_id, log
        self.cells = CellWriter(zoo, corpus, config, store, run_id, log)
        self.metric_configs = self.cells.metric_configs
        self.leases = Leases(store.root, owner=run_id, ttl=config.lease_ttl)
        self.poll_seconds = poll_seconds

    # -- what to run -----------------------------------------------------------------------------
    def subjects(self, model_ids: list[str]) -> list[tuple[str, int | None]]:
        """(model id, init seed) for every model to run: a control once per seed, others once."""
        out: list[tuple[str, int | None]] = []
        for model_id in model_ids:
            entry = self.zoo.entries.get(model_id)
            seeds = entry.init_seeds if isinstance(entry, RandomInitEntry) else (None,)
            out += [(model_id, seed) for seed in seeds]
        return out

    def plan(self, model_ids: list[str]) -> dict[tuple[str, int | None], list[CellRef]]:
        """The cells each model would compute now, without loading it (entries that are invalid or
        whose weights are unavailable are left out: they will fail)."""
        out = {}
        for model_id, seed in self.subjects(model_ids):
            entry = self.zoo.entries.get(model_id)
            try:
                weights = fingerprint(entry, self.zoo, seed) if entry is not None else None
                self.cells.commits[model_id] = model_commit(entry, self.zoo) if entry is not None else None
            except Exception:  # noqa: BLE001  (reported when the model runs)
                weights = None
            if weights is not None:
                refs = self.cells.refs(model_id, weights).values()
                out[(model_id, seed)] = [r for r in refs if self.config.recompute or not self._done(r)]
        return out

    def _done(self, ref: CellRef) -> bool:
        """``store.is_done``, False where the store cannot tell (the cell is then tried, and fails
        with the store's error)."""
        try:
            return self.store.is_done(ref)
        except OSError:
            return False

    # -- the run ---------------------------------------------------------------------------------
    def run(self, model_ids: list[str]) -> list[ModelOutcome]:
        """Every model, then every cell that another run was computing (waited for until it is done,
        or taken over when that run's lease expires)."""
        try:
            self.store.clean_staging()
        except OSError as e:  # a read-only store, say: each cell then fails on its own
            self.log(f"store: cannot clean its staging folder: {one_line(e)}")
        subjects = self.subjects(model_ids)
        outcomes = []
        with self.leases:
            for position, (model_id, seed) in enumerate(subjects, start=1):
                label = model_id if seed is None else f"{model_id} (init seed {seed})"
                self.log(f"[{position}/{len(subjects)}] {label}")
                outcomes.append(self.run_model(model_id, seed))
            self.wait_for_others(outcomes)
        return outcomes

    def wait_for_others(self, outcomes: list[ModelOutcome]) -> None:
        """Until no outcome has cells another run is computing: those that finish count as cached;
        those released unfinished or whose holder died are computed here."""
        while any(o.leased for o in outcomes):
            waiting = {(o.model_id, m): who for o in outcomes for m, who in o.leased.items()}
            self.log(f"waiting for {len(waiting)} cell(s) another run is computing: "
                     + ", ".join(f"{m}/{metric} by {who}" for (m, metric), who in list(waiting.items())[:3]))
            time.sleep(self.poll_seconds)
            for i, o in enumerate(outcomes):
                if not o.leased:
                    continue
                refs = {r.metric: r for r in o.refs()}
                done = [m for m in o.leased if self._done(refs[m])]
                for m in done:
                    del o.leased[m]
                    o.cached.append(m)
                if any(self.leases.holder(refs[m]) is None for m in o.leased):  # released unfinished, or expired
                    again = self.run_model(o.model_id, o.init_seed)
                    again.cached = sorted(set(again.cached) | set(o.cached))
                    outcomes[i] = again

    def run_model(self, model_id: str, init_seed: int | None = None) -> ModelOutcome:
        """One model's pending cells. Whatever fails inside becomes failed rows with one line."""
        outcome = ModelOutcome(model_id, init_seed)
        stage = _Stage()
        refs: dict[str, CellRef] = {}
        weights = UNIDENTIFIED
        try:
            entry = self.zoo.entries.get(model_id)
            if entry is None:
                bad = next(e for e in self.zoo.errors if e.label == model_id)
                raise ModelFailure(f"invalid zoo entry: {bad}")
            stage.name = "weights"
            weights = fingerprint(entry, self.zoo, init_seed)
            self.cells.commits[model_id] = model_commit(entry, self.zoo)
        except MODEL_FAULTS as e:  # any failure of one model is recorded, the run goes on
            self.fail_model(outcome, list(self.metric_configs), one_line(e, stage.name), weights)
            return outcome
        refs = self.cells.refs(model_id, weights)
        outcome.keys = {m: ref.key for m, ref in refs.items()}
        try:
            for path in self.store.sweep(model_id):
                self.log(f"  quarantined {path.name}: not a readable idsuite file (see {self.store.quarantined})")
        except OSError as e:  # a store that cannot be swept: each cell meets the error itself below
            self.log(f"  store: cannot check the folders of {model_id}: {one_line(e)}")
        pending = []
        for m, ref in refs.items():
            try:
                if not self.config.recompute and self.store.is_done(ref):
                    outcome.cached.append(m)
                elif self.leases.acquire(ref):
                    pending.append(m)
                else:
                    holder = self.leases.holder(ref)
                    outcome.leased[m] = holder.describe() if holder else "another run"
            except OSError as e:  # the store cannot take this cell: it fails alone
                outcome.failed[m] = one_line(e, "store")
        if not pending:
            self.cells.record_failures(outcome, refs, weights)
            self.log("  all metrics cached; nothing to compute" if not (outcome.leased or outcome.failed) else
                     f"  {len(outcome.leased)} metric(s) being computed by another run, {len(outcome.failed)} failed")
            return outcome
        try:
            self._compute(outcome, entry, init_seed, weights, refs, pending, stage)
        except MODEL_FAULTS as e:  # the model's own code may exit or raise KeyboardInterrupt: its failure
            message = one_line(e, stage.name)
            outcome.failed.update({m: message for m in pending if m not in outcome.computed})
        finally:
            self.cells.record_failures(outcome, refs, weights)
            for m in pending:
                self.leases.release(refs[m])
        return outcome

    def fail_model(self, outcome: ModelOutcome, metrics: list[str], message: str, weights: str) -> None:
        """Record ``metrics`` of a model as failed with ``message`` (failed rows in the store)."""
        outcome.failed.update({m: message for m in metrics})
        refs = self.cells.refs(outcome.model_id, weights, metrics)
        outcome.keys.update({m: r.key for m, r in refs.items()})
        self.cells.record_failures(outcome, refs, weights)

    def _compute(self, outcome: ModelOutcome, entry, init_seed: int | None, weights: str, refs: dict[str, CellRef],
                 pending: list[str], stage: _Stage) -> None:
        stage.name = "load"
        prepared = prepare_model(entry, self.zoo, self.corpus, self.config, init_seed)
        tracer, facts = prepared.tracer, prepared.facts
        metrics = {m: metric_class(m)(self.metric_configs[m], self.config.seed) for m in pending}
        batches = length_batches(tracer.lengths, tracer.n_heads, self.config.batch_size, self.config.batch_map_elements)
        facts["batch_size"] = max(map(len, batches))  # the largest batch actually run
        progress = tqdm(batches, desc="  forward + metrics", unit="batch", file=sys.stderr, leave=False)
        for number, batch_ids in enumerate(progress, start=1):
            stage.name = f"forward pass, batch {number} of {len(batches)}"
            where = f"batch {number}"

            def on_layer(batch: BatchTrace, layer: int, where: str = where) -> None:
                _each(metrics, outcome, f"{where}, layer {layer + 1}",
                      lambda m: m.update_layer(batch, layer) if hasattr(m, "update_layer") else None)

            trace = tracer.trace(batch_ids, on_layer)  # each layer's maps are consumed as they come, then released
            _each(metrics, outcome, where, lambda m, trace=trace: m.update(trace))
        for name, metric in metrics.items():
            self.log(f"  {name} ...")
            try:
                rows = metric.finish(tracer)
            except Exception as e:  # noqa: BLE001
                outcome.failed[name] = one_line(e, name)
                continue
            stage.name = f"writing {name}"
            self.cells.write(refs[name], init_seed, weights, rows, facts)
            outcome.computed.append(name)
            self.leases.release(refs[name])
