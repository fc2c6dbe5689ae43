"""A run's cells: what each is (its key, from the identity columns of ``idsuite.results.schema``),
what is written beside its rows (provenance and model facts), and writing it, finished or failed."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from idsuite.results.identity import UNIDENTIFIED, cell_key
from idsuite.results.schema import FACT_COLUMNS, SCHEMA_VERSION
from idsuite.results.store import CellRef, ResultStore
from idsuite.runners.failures import one_line
from idsuite.runners.models.zoo import RandomInitEntry, Zoo
from idsuite.runners.probing.corpus import Corpus
from idsuite.runners.provenance import device_name, library_versions, utc_now
from idsuite.runners.run_config import RunConfig
from idsuite.suite.specs import SPECS
from idsuite.suite.specs.rows import ROW_COLUMNS


@dataclass
class ModelOutcome:
    """What a run did for one model (one init seed of a control); ``keys``: the cell key of every
    metric under this run's configuration (the store also holds cells of other configurations);
    ``leased``: metrics another run was computing (metric -> who)."""

    model_id: str
    init_seed: int | None = None
    computed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    leased: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.model_id if self.init_seed is None else f"{self.model_id} (init seed {self.init_seed})"

    def refs(self) -> list[CellRef]:
        return [CellRef(self.model_id, metric, key) for metric, key in self.keys.items()]


class CellWriter:
    """Keys and writes the cells of one run (``run_id``) of ``config`` on ``corpus`` into ``store``."""

    def __init__(self, zoo: Zoo, corpus: Corpus, config: RunConfig, store: ResultStore, run_id: str,
                 log: Callable[[str], None]) -> None:
        self.zoo, self.corpus, self.config, self.store, self.run_id, self.log = zoo, corpus, config, store, run_id, log
        self.metric_configs = config.metric_configs()
        self.versions = library_versions()
        self.commits: dict[str, str | None] = {}
        """Per model id, the hub commit its weights are read at in this run (``model_commit``)."""

    def identity(self, model_id: str, weights: str, metric: str) -> dict[str, Any]:
        """The key columns of a cell (``idsuite.results.identity``): what makes it the same computation;
        ``weights``: the model's fingerprint (an init seed's control has its own)."""
        entry = self.zoo.entries.get(model_id)
        return {
            "model_fingerprint": weights,
            "model_commit": self.commits.get(model_id) if weights != UNIDENTIFIED else None,
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

    def refs(self, model_id: str, weights: str, metrics: list[str] | None = None) -> dict[str, CellRef]:
        """metric -> its cell for the model of fingerprint ``weights`` (default: every metric of the run)."""
        return {m: CellRef(model_id, m, cell_key(self.identity(model_id, weights, m)))
                for m in (self.metric_configs if metrics is None else metrics)}

    def provenance(self, ref: CellRef, init_seed: int | None, weights: str) -> dict[str, Any]:
        """The provenance columns of the cell ``ref``: its identity, and where, when and by what run."""
        entry = self.zoo.entries.get(ref.model_id)
        return self.identity(ref.model_id, weights, ref.metric) | {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "cell_key": ref.key,
            "model_id": ref.model_id,
            "init_seed": init_seed,
            "model_source": getattr(entry, "source", None),
            "is_control": isinstance(entry, RandomInitEntry),
            "control_of": entry.base if isinstance(entry, RandomInitEntry) else None,
            "corpus_id": self.corpus.corpus_id,
            "device": device_name(self.config.resolved_device()),
            "batch_size": self.config.batch_size,
            "timestamp": utc_now(),
        }

    def write(self, ref: CellRef, init_seed: int | None, weights: str, rows: pd.DataFrame,
              model_facts: dict[str, Any], status: str = "ok", error: str | None = None) -> None:
        """``rows`` as the cell ``ref``, with its provenance and ``model_facts`` (the facts a failed
        cell has not: null)."""
        columns = self.provenance(ref, init_seed, weights) | dict.fromkeys(FACT_COLUMNS) | model_facts
        self.store.write(ref, rows, columns | {"status": status, "error": error})

    def record_failures(self, outcome: ModelOutcome, refs: dict[str, CellRef], weights: str) -> None:
        """One failed cell per failed metric of ``outcome``, and one line in the log per cause (a model
        that fails to load fails every metric for one reason: said once); a cell that cannot even be
        written (a full disk) stays in the outcome and the log."""
        causes: dict[str, list[str]] = {}
        for metric, message in outcome.failed.items():
            causes.setdefault(message, []).append(metric)
        for message, metrics in causes.items():
            which = f"all {len(metrics)} metrics" if len(metrics) == len(self.metric_configs) > 1 else ", ".join(metrics)
            self.log(f"  FAILED ({which}): {message}")
        for metric, message in outcome.failed.items():
            row = pd.DataFrame([dict.fromkeys(ROW_COLUMNS) | {"metric": metric, "value": math.nan}])
            try:
                self.write(refs[metric], outcome.init_seed, weights, row, {}, status="failed", error=message)
            except OSError as e:
                self.log(f"  (could not record the failure of {metric}: {one_line(e)})")
