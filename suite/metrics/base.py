"""How a metric declares itself: metadata once, a config model, and an accumulator over batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import pandas as pd
import pydantic
import torch

from suite.registry import Registry
from suite.trace import BatchTrace, ModelProbe

ROW_COLUMNS = ["metric", "variant", "layer", "head", "sequence", "n_tokens", "query", "key", "label", "value"]
"""``query``/``key``: positions of an attention-map cell; ``label``: text (a token of an example)."""


class MetricConfig(pydantic.BaseModel):
    """Base of every metric's settings; unknown keys are errors."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Variant:
    """One reported quantity of a metric: what it means and which way is 'more identifiable'."""

    description: str
    direction: Literal["higher", "lower", "none"] = "none"
    value_range: tuple[float | None, float | None] = (None, None)


@dataclass(frozen=True)
class MetricSpec:
    """Metadata declared once; the summary and the leaderboard build their columns from it.

    ``headline`` names the variant shown as the model's one number and ``headline_layer`` how it is
    taken from the per-layer rows (``mean`` over layers or the ``last`` layer); with
    ``headline_best_of``, the best of those variants (by their direction) is shown instead.
    """

    name: str
    display_name: str
    description: str
    version: int
    variants: dict[str, Variant]
    headline: str
    headline_layer: Literal["mean", "last"] = "mean"
    headline_best_of: tuple[str, ...] = ()
    config_type: type[MetricConfig] = MetricConfig
    needs_model: bool = False


class Metric(Protocol):
    """A metric accumulates over batches (``update``) and turns into long-format rows (``finish``)."""

    spec: ClassVar[MetricSpec]

    def __init__(self, config: Any, seed: int) -> None: ...

    def update(self, batch: BatchTrace) -> None: ...

    def finish(self, probe: ModelProbe | None) -> pd.DataFrame: ...


METRICS: Registry[type[Metric]] = Registry("metric")


def register(cls: type[Metric]) -> type[Metric]:
    """Class decorator: add a metric to the one registry under ``spec.name``."""
    return METRICS.register(cls.spec.name, cls)


INDEX_COLUMNS = ("layer", "head", "sequence", "n_tokens", "query", "key")


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
        chunk: dict[str, Any] = {"variant": variant, "value": values, "label": None if label is None else list(label)}
        for name, x in zip(INDEX_COLUMNS, (layer, head, sequence, n_tokens, query, key), strict=True):
            chunk[name] = None if x is None else torch.as_tensor(x).reshape(-1).cpu().expand(size).numpy().astype(np.int64)
        self.chunks.append(chunk)

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
        return pd.DataFrame(columns)[ROW_COLUMNS]
