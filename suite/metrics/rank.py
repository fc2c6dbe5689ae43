"""Metric: attention rank deficiency of every head (``null_dim = n - rank(T_h)``)."""

from __future__ import annotations

import pandas as pd
import torch

from suite.metrics.base import RowBuffer
from suite.rank_deficiency import rank_deficiency
from suite.specs.rank_deficiency import SPEC, RankConfig
from suite.trace import BatchTrace, ModelProbe

COMPUTE_DTYPES = {"float64": torch.float64, "float32": torch.float32}


class RankDeficiencyMetric:
    spec = SPEC

    def __init__(self, config: RankConfig, seed: int) -> None:
        self.config = config
        self.rows = RowBuffer(self.spec.name)
        self.per_layer: list[list[tuple[torch.Tensor, torch.Tensor]]] = []  # (null_dim, row null fraction) per batch

    def update(self, batch: BatchTrace) -> None:
        dtype = COMPUTE_DTYPES[self.config.compute_dtype]
        if not self.per_layer:
            self.per_layer = [[] for _ in batch.layers]
        for layer in range(len(batch.layers)):
            projection = batch.projection(layer, dtype)
            deficiency = rank_deficiency(projection.row_rank, projection.context, batch.lengths)
            b, h = deficiency.rank.shape
            seq = batch.sequence_ids.view(-1, 1).expand(b, h)
            heads = torch.arange(h).view(1, -1).expand(b, h)
            for name, value in (("rank", deficiency.rank), ("null_dim", deficiency.null_dim)):
                self.rows.add(name, value, layer + 1, heads, seq, deficiency.n)
            self.per_layer[layer].append((deficiency.null_dim.cpu(), deficiency.row_null_fraction.cpu()))

    def finish(self, probe: ModelProbe | None) -> pd.DataFrame:
        all_null, all_fraction = [], []
        for layer, chunks in enumerate(self.per_layer, start=1):
            null = torch.cat([c[0] for c in chunks]).double()
            fraction = torch.cat([c[1] for c in chunks]).double()
            heads = torch.arange(null.shape[1])
            self.rows.add("nonidentifiable_share", (null > 0).double().mean(0), layer, heads)
            self.rows.add("null_fraction", fraction.mean(0), layer, heads)
            self.rows.add("nonidentifiable_share", (null > 0).double().mean(), layer)
            self.rows.add("null_fraction", fraction.mean(), layer)
            all_null.append(null)
            all_fraction.append(fraction)
        if all_null:
            self.rows.add("nonidentifiable_share", (torch.cat(all_null) > 0).double().mean())
            self.rows.add("null_fraction", torch.cat(all_fraction).mean())
        return self.rows.frame()
