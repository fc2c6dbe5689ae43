"""The job loop: every selected model, every pending metric cell, one forward pass per batch."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
import pydantic
import torch
from tqdm.auto import tqdm

from runners.adapters import UnsupportedArchitecture, adapter_for
from runners.corpus import Corpus
from runners.loading import load_model
from results.identity import cell_key
from results.schema import FACT_COLUMNS, SCHEMA_VERSION
from results.store import CellRef, ResultStore
from runners.provenance import device_name, library_versions, utc_now
from runners.tracing import Tracer
from runners.weights import ModelLoadError, fingerprint
from runners.zoo import EntryError, RandomInitEntry, Zoo
from suite.metrics import metric_class
from suite.specs import SPECS, MetricConfig
from suite.specs.rows import ROW_COLUMNS


class RunConfig(pydantic.BaseModel):
    """Settings shared by every model of a run. ``metrics`` maps metric names to config overrides."""

    model_config = pydantic.ConfigDict(extra="forbid")

    seed: int = 0
    batch_size: int = 16
    max_tokens: int = 128
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"

    def resolved_device(self) -> str:
        """``auto``: the GPU where CUDA is present, else the CPU."""
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def forward_dtype(self, entry_dtype: str) -> str:
        """The dtype of the forward pass: ``auto`` gives bfloat16 on a GPU (the metrics still run in
        float32 / float64) and the entry's own dtype on the CPU."""
        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if self.resolved_device().startswith("cuda") and entry_dtype == "float32" else entry_dtype
    metrics: dict[str, dict[str, Any]] = {}
    recompute: bool = False

    def metric_configs(self) -> dict[str, MetricConfig]:
        for name in self.metrics:
            SPECS.get(name)  # an unknown name raises, with a "did you mean"
        return {name: spec.config_type(**self.metrics.get(name, {})) for name, spec in SPECS.items()}


@dataclass
class ModelOutcome:
    """What a run did for one model; ``keys``: the cell key of every metric under this run's
    configuration (the store also holds cells of other configurations)."""

    model_id: str
    computed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)


class _Failure(Exception):
    """A model-level failure whose message is the one line recorded in its rows."""


def _error_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


class Runner:
    """Runs the battery for many models into one store; a failing model is recorded and skipped."""

    def __init__(self, zoo: Zoo, corpus: Corpus, config: RunConfig, store: ResultStore, run_id: str,
                 log: Callable[[str], None] = print) -> None:
        self.zoo, self.corpus, self.config, self.store, self.run_id, self.log = zoo, corpus, config, store, run_id, log
        self.metric_configs = config.metric_configs()
        self.versions = library_versions()

    def plan(self, model_ids: list[str]) -> dict[str, list[CellRef]]:
        """The cells each model would compute now, without loading it (entries that are invalid or
        whose weights are unavailable are left out: they will fail)."""
        out = {}
        for model_id in model_ids:
            entry = self.zoo.entries.get(model_id)
            try:
                model_fingerprint = fingerprint(entry, self.zoo) if entry is not None else None
            except ModelLoadError:
                model_fingerprint = None
            if model_fingerprint is not None:
                refs = [self._ref(model_id, model_fingerprint, m) for m in self.metric_configs]
                out[model_id] = [r for r in refs if self.config.recompute or not self.store.is_done(r)]
        return out

    def run(self, model_ids: list[str]) -> list[ModelOutcome]:
        outcomes = []
        for position, model_id in enumerate(model_ids, start=1):
            self.log(f"[{position}/{len(model_ids)}] {model_id}")
            outcomes.append(self.run_model(model_id))
        return outcomes

    # -- cells ---------------------------------------------------------------------------------
    def _identity(self, model_id: str, model_fingerprint: str, metric: str) -> dict[str, Any]:
        """The key columns of a cell (``results.identity``): what makes it the same computation."""
        entry = self.zoo.entries.get(model_id)
        return {
            "model_fingerprint": model_fingerprint,
            "trust_remote_code": bool(getattr(entry, "trust_remote_code", False)),
            "corpus_hash": self.corpus.content_hash,
            "metric": metric,
            "metric_version": SPECS.get(metric).version,
            "metric_config": json.dumps(self.metric_configs[metric].model_dump(mode="json"), sort_keys=True),
            "seed": self.config.seed,
            "max_tokens": self.config.max_tokens,
            "dtype": self.config.forward_dtype(entry.dtype) if entry is not None else "n/a",
            **self.versions,
        }

    def _ref(self, model_id: str, model_fingerprint: str, metric: str) -> CellRef:
        return CellRef(model_id, metric, cell_key(self._identity(model_id, model_fingerprint, metric)))

    def _provenance(self, ref: CellRef, model_fingerprint: str) -> dict[str, Any]:
        entry = self.zoo.entries.get(ref.model_id)
        return self._identity(ref.model_id, model_fingerprint, ref.metric) | {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "cell_key": ref.key,
            "model_id": ref.model_id,
            "model_source": getattr(entry, "source", None),
            "is_control": isinstance(entry, RandomInitEntry),
            "control_of": entry.base if isinstance(entry, RandomInitEntry) else None,
            "corpus_id": self.corpus.corpus_id,
            "device": device_name(self.config.resolved_device()),
            "batch_size": self.config.batch_size,
            "timestamp": utc_now(),
        }

    def _write_failed(self, model_id: str, metrics: list[str], message: str, model_fingerprint: str) -> dict[str, str]:
        """Writes a failed cell per metric; returns their keys."""
        keys = {}
        for metric in metrics:
            ref = self._ref(model_id, model_fingerprint, metric)
            row = pd.DataFrame([{c: None for c in ROW_COLUMNS} | {"metric": metric, "value": math.nan}])
            self._write(ref, model_fingerprint, row, {}, status="failed", error=message)
            keys[metric] = ref.key
        return keys

    def _write(self, ref: CellRef, model_fingerprint: str, rows: pd.DataFrame, model_facts: dict[str, Any],
               status: str = "ok", error: str | None = None) -> None:
        columns = self._provenance(ref, model_fingerprint) | dict.fromkeys(FACT_COLUMNS) | model_facts
        self.store.write(ref, rows.assign(**columns, status=status, error=error))

    # -- one model -----------------------------------------------------------------------------
    def run_model(self, model_id: str) -> ModelOutcome:
        outcome = ModelOutcome(model_id)
        names = list(self.metric_configs)
        entry = self.zoo.entries.get(model_id)
        if entry is None:
            bad: EntryError = next(e for e in self.zoo.errors if e.label == model_id)
            self._fail(outcome, names, str(bad), "invalid-entry")
            return outcome
        try:
            model_fingerprint = fingerprint(entry, self.zoo)
        except ModelLoadError as e:
            self._fail(outcome, names, f"{model_id}: {e}", "unavailable")
            return outcome
        refs = {m: self._ref(model_id, model_fingerprint, m) for m in names}
        outcome.keys = {m: ref.key for m, ref in refs.items()}
        pending = [m for m in names if self.config.recompute or not self.store.is_done(refs[m])]
        outcome.cached = [m for m in names if m not in pending]
        if not pending:
            self.log("  all metrics cached; nothing to compute")
            return outcome
        try:
            tracer, facts = self._prepare(model_id, entry)
        except _Failure as e:
            self._fail(outcome, pending, str(e), model_fingerprint)
            return outcome
        metrics = {m: metric_class(m)(self.metric_configs[m], self.config.seed) for m in pending}
        batches = self._batches(tracer)
        facts["n_sequences"] = len(tracer.encodings)
        for batch_ids in tqdm(batches, desc="  forward + metrics", unit="batch", file=sys.stderr, leave=False):
            trace = tracer.trace(batch_ids)
            for name in list(metrics):
                try:
                    metrics[name].update(trace)
                except Exception as e:  # a metric that breaks is recorded; the others go on
                    outcome.failed[name] = _error_line(e)
                    del metrics[name]
        for name, metric in metrics.items():
            self.log(f"  {name} ...")
            try:
                rows = metric.finish(tracer)
            except Exception as e:
                outcome.failed[name] = _error_line(e)
                continue
            self._write(refs[name], model_fingerprint, rows, facts)
            outcome.computed.append(name)
        for name, message in outcome.failed.items():
            self.log(f"  FAILED {name}: {message}")
            self._write_failed(model_id, [name], f"{model_id}: {message}", model_fingerprint)
        return outcome

    def _fail(self, outcome: ModelOutcome, metrics: list[str], message: str, model_fingerprint: str) -> None:
        self.log(f"  FAILED: {message}")
        outcome.failed.update({m: message for m in metrics})
        outcome.keys.update(self._write_failed(outcome.model_id, metrics, message, model_fingerprint))

    def _prepare(self, model_id: str, entry) -> tuple[Tracer, dict[str, Any]]:
        try:
            loaded = load_model(entry, self.zoo, self.config.resolved_device(), self.config.forward_dtype(entry.dtype))
            adapter = adapter_for(loaded.model.config.model_type)
            tracer = Tracer(loaded.model, loaded.tokenizer, adapter)
        except (ModelLoadError, UnsupportedArchitecture) as e:
            raise _Failure(f"{model_id}: {e}") from e
        for index, (text, pair) in enumerate(self.corpus.items):
            enc = loaded.tokenizer(text, pair, truncation=False)
            if len(enc["input_ids"]) <= self.config.max_tokens:
                tracer.encodings[index] = dict(enc)
        if len(tracer.encodings) < 2:
            raise _Failure(f"{model_id}: fewer than two probe sequences fit in {self.config.max_tokens} tokens")
        config = loaded.model.config
        facts = {
            "family": entry.family or config.model_type,
            "model_type": config.model_type,
            "n_layers": len(tracer.blocks),
            "n_heads": tracer.n_heads,
            "n_kv_heads": int(getattr(config, "num_key_value_heads", None) or tracer.n_heads),
            "d_head": tracer.d_head,
            "d_model": int(tracer.w_out[0].shape[-1]),
            "n_params": sum(p.numel() for p in loaded.model.parameters()),
            "causal": adapter.causal,
        }
        return tracer, facts

    def _batches(self, tracer: Tracer) -> list[list[int]]:
        """Sequences sorted by length so that padding stays small, then cut into batches."""
        order = sorted(tracer.encodings, key=lambda s: (len(tracer.encodings[s]["input_ids"]), s))
        size = self.config.batch_size
        return [order[i : i + size] for i in range(0, len(order), size)]
