"""What a metric implementation is: an accumulator over batches that turns into long-format rows.

Its declaration (metadata, variants, config) lives in ``suite.specs``; ``metric_class`` imports the
implementation a declaration names.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd
import torch

from suite.specs import SPECS, MetricSpec
from suite.specs.rows import INDEX_COLUMNS, ROW_COLUMNS
from suite.uncertainty import Estimate
from suite.trace import BatchTrace, ModelProbe


class Metric(Protocol):
    """A metric accumulates over batches (``update``) and turns into long-format rows (``finish``)."""

    spec: ClassVar[MetricSpec]

    def __init__(self, config: Any, seed: int) -> None: ...

    def update(self, batch: BatchTrace) -> None: ...

    def finish(self, probe: ModelProbe | None) -> pd.DataFrame: ...


def metric_class(name: str) -> type[Metric]:
    """The implementation of the metric ``name`` (an unknown name raises with a "did you mean")."""
    module, _, cls = SPECS.get(name).implementation.partition(":")
    return getattr(importlib.import_module(module), cls)


@dataclass
class RowBuffer:
    """Collects long-format result rows as column chunks (cheap for per-head tensors): arrays per
    ``add``, one DataFrame at ``frame``."""

    metric: str
    chunks: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        variant: str,
        value: torch.Tensor | float,
        layer: int | None = None,
        head: torch.Tensor | Sequence[int] | None = None,
        sequence: torch.Tensor | Sequence[int] | None = None,
        n_tokens: torch.Tensor | Sequence[int] | None = None,
        query: torch.Tensor | Sequence[int] | None = None,
        key: torch.Tensor | Sequence[int] | None = None,
        label: Sequence[str] | None = None,
    ) -> None:
        """Add one row, or one row per element of ``value``; index columns broadcast against it."""
        values = torch.as_tensor(value, dtype=torch.float64).reshape(-1).cpu().numpy()
        size = len(values)
        chunk: dict[str, Any] = {"variant": variant, "value": values, "label": None if label is None else list(label),
                                 "estimate": None}
        for name, x in zip(INDEX_COLUMNS, (layer, head, sequence, n_tokens, query, key), strict=True):
            chunk[name] = None if x is None else torch.as_tensor(x).reshape(-1).cpu().expand(size).numpy().astype(np.int64)
        self.chunks.append(chunk)

    def add_estimate(self, variant: str, estimate: Estimate, layer: torch.Tensor | Sequence[int] | int | None = None,
                     head: torch.Tensor | Sequence[int] | None = None) -> None:
        """Add aggregate rows: ``estimate.value`` with its interval and sample size (one row per
        element; ``layer`` and ``head`` broadcast against it)."""
        self.add(variant, torch.as_tensor(estimate.value), layer, head)
        flat = lambda a: np.broadcast_to(np.asarray(a), np.shape(estimate.value)).reshape(-1)  # noqa: E731
        self.chunks[-1]["estimate"] = {"ci_low": flat(estimate.low).astype(np.float64),
                                       "ci_high": flat(estimate.high).astype(np.float64),
                                       "n": flat(estimate.n).astype(np.int64), "n_unit": estimate.unit,
                                       "n_clusters": estimate.clusters}

    def frame(self) -> pd.DataFrame:
        if not self.chunks:
            return pd.DataFrame({c: pd.Series(dtype="object") for c in ROW_COLUMNS})
        sizes = [len(c["value"]) for c in self.chunks]
        columns: dict[str, Any] = {
            "metric": np.full(sum(sizes), self.metric, dtype=object),
            "variant": np.repeat(np.array([c["variant"] for c in self.chunks], dtype=object), sizes),
        }
        for name in INDEX_COLUMNS:
            data = np.concatenate([np.zeros(s, np.int64) if c[name] is None else c[name] for c, s in zip(self.chunks, sizes)])
            missing = np.concatenate([np.full(s, c[name] is None) for c, s in zip(self.chunks, sizes)])
            columns[name] = pd.arrays.IntegerArray(data, missing)
        labels = [x for c, s in zip(self.chunks, sizes) for x in (c["label"] if c["label"] is not None else [None] * s)]
        columns["label"] = pd.array(labels, dtype="string")
        columns["value"] = np.concatenate([c["value"] for c in self.chunks])
        for name, kind in (("ci_low", np.float64), ("ci_high", np.float64)):
            columns[name] = np.concatenate([np.full(s, np.nan) if c["estimate"] is None else c["estimate"][name]
                                            for c, s in zip(self.chunks, sizes)]).astype(kind)
        present = np.concatenate([np.full(s, c["estimate"] is not None) for c, s in zip(self.chunks, sizes)])
        for name in ("n", "n_clusters"):
            data = np.concatenate([np.zeros(s, np.int64) if c["estimate"] is None else
                                   np.broadcast_to(c["estimate"][name], s) for c, s in zip(self.chunks, sizes)])
            columns[name] = pd.arrays.IntegerArray(data.astype(np.int64), ~present)
        columns["n_unit"] = pd.array([c["estimate"]["n_unit"] if c["estimate"] is not None else None
                                      for c, s in zip(self.chunks, sizes) for _ in range(s)], dtype="string")
        return pd.DataFrame(columns)[list(ROW_COLUMNS)]
