"""What a metric implementation is: an accumulator over batches that turns into long-format rows.

Its declaration (metadata, variants, config) lives in ``idsuite.suite.specs``; ``metric_class`` imports the
implementation a declaration names.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from idsuite.suite.specs import SPECS, MetricSpec
from idsuite.suite.specs.rows import INDEX_COLUMNS, ROW_COLUMNS
from idsuite.suite.specs.sample import CostBudget, SequentialSample
from idsuite.suite.trace import BatchTrace, ModelProbe
from idsuite.suite.uncertainty import Estimate


class Metric(Protocol):
    """A metric accumulates over batches (``update``) and turns into long-format rows (``finish``).

    A metric that reads the attention maps also has ``update_layer(batch, layer)``: the runner hands
    it each layer as the forward pass produces it (``idsuite.suite.trace.LayerConsumer``), then releases the
    layer's maps; ``update`` closes the batch (and reads any layers a trace kept)."""

    spec: ClassVar[MetricSpec]

    def __init__(self, config: Any, seed: int) -> None: ...

    def update(self, batch: BatchTrace) -> None: ...

    def finish(self, probe: ModelProbe | None) -> pd.DataFrame: ...


def progress_bar(description: str, total: int, unit: str) -> tqdm:
    """A progress bar on standard error for the long steps inside ``finish`` (fits, attribution),
    cleared when it closes."""
    return tqdm(total=total, desc=f"  {description}", unit=unit, file=sys.stderr, leave=False)


Item = TypeVar("Item")
Measured = TypeVar("Measured")


def sample_until_precise(todo: Sequence[Item], measure: Callable[[Item], Measured],
                         half_width: Callable[[list[Measured]], float], sample: SequentialSample, description: str,
                         target: str) -> list[Measured]:
    """``measure`` the sequences of ``todo`` in order, one at a time, until ``sample.target_met``
    for ``half_width(done)``, the half-width of the target's 95% interval over those measured, or
    until ``todo`` runs out. The progress bar shows the running half-width of the ``target`` (from
    the second sequence on: over one it is 0)."""
    done: list[Measured] = []
    with progress_bar(description, len(todo), "sequence") as bar:
        for item in todo:
            done.append(measure(item))
            bar.update()
            if len(done) > 1:
                half = half_width(done)
                bar.set_postfix_str(f"{target} +-{half:.3f}, target {sample.target_half_width}")
                if sample.target_met(len(done), half):
                    break
    return done


def within_budget(metric: str, budget: CostBudget, todo: list[Item], costs: list[float]) -> tuple[list[Item], str | None]:
    """The sequences of ``todo`` that ``budget`` affords (a prefix, from each one's cost) and, where it
    ends the sample, why (said at once too)."""
    why = budget.budget_note(costs)
    taken = todo[: budget.affordable(costs)]
    if why is not None:
        say(metric, f"{len(taken)} sequences at most: {why}")
    return taken, why


def say(metric: str, line: str) -> None:
    """One line on standard error now (the rows' label keeps it too), clear of any progress bar."""
    tqdm.write(f"  {metric}: {line}", file=sys.stderr)


def metric_class(name: str) -> type[Metric]:
    """The implementation of the metric ``name`` (an unknown name raises with a "did you mean")."""
    module, _, cls = SPECS.get(name).implementation.partition(":")
    return getattr(importlib.import_module(module), cls)


IntLike = torch.Tensor | np.ndarray | Sequence[int] | int | None


def _flat(x: torch.Tensor | np.ndarray | Sequence | float) -> np.ndarray:
    """A tensor, array, sequence or number as a flat NumPy array (on the CPU)."""
    if isinstance(x, torch.Tensor):
        return x.detach().reshape(-1).cpu().numpy()
    return np.asarray(x).reshape(-1)


def layer_head_grid(n_layers: int, n_heads: int) -> tuple[np.ndarray, np.ndarray]:
    """Layer (1..L) and head (0..H-1) of every entry of a flattened (L, H) array."""
    layers, heads = np.meshgrid(np.arange(1, n_layers + 1), np.arange(n_heads), indexing="ij")
    return layers.reshape(-1), heads.reshape(-1)


class UndeclaredRow(ValueError):
    """A metric added a row its declaration does not have (a variant, or per-head / per-sequence
    rows of a variant that does not declare them)."""


@dataclass
class RowBuffer:
    """Collects long-format result rows as column chunks (cheap for per-head tensors): arrays per
    ``add``, one DataFrame at ``frame``. Columns a chunk does not give are null. A row the metric's
    ``spec`` does not declare is refused (``UndeclaredRow``) as it is added."""

    spec: MetricSpec
    chunks: list[dict[str, Any]] = field(default_factory=list)

    def _check_declared(self, variant: str, head: IntLike, sequence: IntLike) -> None:
        name = variant if variant in self.spec.variants else variant.split(":", 1)[0]
        declared = self.spec.variants.get(name)
        if declared is None:  # a family's member (offset:+1, matrix:alti) is declared by its family
            raise UndeclaredRow(f"{self.spec.name} declares no variant {variant!r}")
        if declared.kind == "layer" and head is not None and sequence is None and not declared.per_head:
            raise UndeclaredRow(f"{self.spec.name}/{variant}: per-head rows, but the variant does not declare per_head")
        if declared.kind == "layer" and sequence is not None and not declared.per_sequence:
            raise UndeclaredRow(f"{self.spec.name}/{variant}: per-sequence rows, but the variant does not declare per_sequence")

    def add(self, variant: str, value: torch.Tensor | np.ndarray | float, layer: IntLike = None, head: IntLike = None,
            sequence: IntLike = None, n_tokens: IntLike = None, query: IntLike = None, key: IntLike = None,
            label: Sequence[str] | None = None, n: IntLike = None, n_unit: str | None = None) -> None:
        """Add one row, or one row per element of ``value``; the other columns broadcast against it.
        ``n``/``n_unit``: on a per-sequence row, the units its value averages (paired comparisons
        weight sequences by them)."""
        self._check_declared(variant, head, sequence)
        values = _flat(value).astype(np.float64)
        size = len(values)
        chunk: dict[str, Any] = {"variant": variant, "value": values, "size": size}
        integers = dict(zip(INDEX_COLUMNS, (layer, head, sequence, n_tokens, query, key), strict=True)) | {"n": n}
        for name, x in integers.items():
            if x is not None:
                chunk[name] = np.broadcast_to(_flat(x), size).astype(np.int64)
        if label is not None:
            chunk["label"] = list(label)
        if n_unit is not None:
            chunk["n_unit"] = n_unit
        self.chunks.append(chunk)

    def add_estimate(self, variant: str, estimate: Estimate, layer: IntLike = None, head: IntLike = None) -> None:
        """Add aggregate rows: ``estimate.value`` with its interval and sample size (one row per
        element; ``layer`` and ``head`` broadcast against it)."""
        shape = np.shape(estimate.value)
        flat = lambda a: np.broadcast_to(np.asarray(a), shape).reshape(-1)  # noqa: E731
        self.add(variant, flat(estimate.value), layer, head, n=flat(estimate.n), n_unit=estimate.unit)
        chunk = self.chunks[-1]
        chunk["ci_low"], chunk["ci_high"] = flat(estimate.low).astype(np.float64), flat(estimate.high).astype(np.float64)
        chunk["n_clusters"] = np.full(chunk["size"], estimate.clusters, dtype=np.int64)

    def frame(self) -> pd.DataFrame:
        """Every row added, with the columns ``idsuite.suite.specs.rows.ROW_COLUMNS`` in their order and types."""
        if not self.chunks:
            return pd.DataFrame({c: pd.Series(dtype="object") for c in ROW_COLUMNS})
        sizes = np.array([c["size"] for c in self.chunks], dtype=np.int64)
        columns: dict[str, Any] = {"value": np.concatenate([c["value"] for c in self.chunks])}
        for name, kind in ROW_COLUMNS.items():
            if name in columns:
                continue
            if kind == "int64":
                data = np.concatenate([c.get(name, np.zeros(c["size"], np.int64)) for c in self.chunks])
                missing = np.repeat([name not in c for c in self.chunks], sizes)
                columns[name] = pd.arrays.IntegerArray(data, missing)
            elif kind == "float64":
                columns[name] = np.concatenate([c.get(name, np.full(c["size"], np.nan)) for c in self.chunks])
            else:
                columns[name] = pd.array(self._strings(name, sizes), dtype="string")
        return pd.DataFrame(columns, copy=False)[list(ROW_COLUMNS)]

    def _strings(self, name: str, sizes: np.ndarray) -> pa.Array:
        """A string column in Arrow: a chunk's one value (``metric``, ``variant``, ``n_unit``) repeated
        over its rows by a dictionary take, its list (``label``) as given, null where it has none."""
        if name == "label":
            parts = [pa.array(list(c[name]), pa.string()) if name in c else pa.nulls(c["size"], pa.string())
                     for c in self.chunks]
            return pa.concat_arrays(parts)
        values = [self.spec.name] * len(self.chunks) if name == "metric" else [c.get(name) for c in self.chunks]
        names = sorted({v for v in values if v is not None})
        if not names:
            return pa.nulls(int(sizes.sum()), pa.string())
        code = {v: i for i, v in enumerate(names)}
        indices = pa.array(np.repeat([code.get(v, 0) for v in values], sizes), mask=np.repeat([v is None for v in values], sizes))
        return pa.DictionaryArray.from_arrays(indices, pa.array(names, pa.string())).cast(pa.string())
