"""Metric: attention rank deficiency of every head (``null_dim = n - rank(T_h)``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from idsuite.suite.metrics.base import RowBuffer, layer_head_grid
from idsuite.suite.rank_deficiency import rank_deficiency
from idsuite.suite.specs.rank_deficiency import SPEC, RankConfig
from idsuite.suite.trace import BatchTrace, ModelProbe
from idsuite.suite.uncertainty import ratio_of_sums

COMPUTE_DTYPES = {"float64": torch.float64, "float32": torch.float32}


class RankDeficiencyMetric:
    spec = SPEC

    def __init__(self, config: RankConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.rows = RowBuffer(self.spec)
        self.sequences: list[torch.Tensor] = []
        self.per_batch: list[tuple[torch.Tensor, torch.Tensor]] = []  # (null_dim, row null fraction), (B, L, H)
        self.layer_values: list[tuple[torch.Tensor, torch.Tensor]] = []  # the same, (B, H) per layer of this batch

    def update_layer(self, batch: BatchTrace, index: int) -> None:
        """Layer ``index`` (0-based) of the batch, as the forward pass hands it over."""
        projection = batch.projection(index, COMPUTE_DTYPES[self.config.compute_dtype])
        deficiency = rank_deficiency(projection.row_rank, projection.context, batch.lengths)
        b, h = deficiency.rank.shape
        seq = batch.sequence_ids.view(-1, 1).expand(b, h)
        heads = torch.arange(h).view(1, -1).expand(b, h)
        for name, value in (("rank", deficiency.rank), ("null_dim", deficiency.null_dim)):
            self.rows.add(name, value, index + 1, heads, seq, deficiency.n)
        self.layer_values.append((deficiency.null_dim.cpu(), deficiency.row_null_fraction.cpu()))

    def update(self, batch: BatchTrace) -> None:
        """Close the batch: its layers' (null_dim, row null fraction) (B, L, H) join the sequences'.
        Layers the trace kept (a pass without a ``LayerConsumer``) are read here."""
        for index in range(len(self.layer_values), len(batch.layers)):
            self.update_layer(batch, index)
        nulls, fractions = zip(*self.layer_values, strict=True)
        self.sequences.append(batch.sequence_ids)
        self.per_batch.append((torch.stack(nulls, 1), torch.stack(fractions, 1)))
        self.layer_values = []

    def finish(self, probe: ModelProbe | None) -> pd.DataFrame:
        """Per head, per layer and for the whole model (the mean over layers), each with its
        bootstrap interval over sequences; and per sequence (the share over its heads)."""
        null = torch.cat([b[0] for b in self.per_batch]).double().numpy()  # (S, L, H)
        fraction = torch.cat([b[1] for b in self.per_batch]).double().numpy()
        sequences = torch.cat(self.sequences).numpy()
        s, n_layers, h = null.shape
        layers, heads = layer_head_grid(n_layers, h)
        for name, x in (("nonidentifiable_share", (null > 0).astype(np.float64)), ("null_fraction", fraction)):
            self.rows.add_estimate(name, ratio_of_sums(x, 1.0, "sequences", self.seed), layers, heads)
            per_layer = x.sum(-1)  # (S, L): over heads
            self.rows.add_estimate(name, ratio_of_sums(per_layer, h, "sequence-heads", self.seed), np.arange(1, n_layers + 1))
            self.rows.add_estimate(name, ratio_of_sums(per_layer, h, "sequence-heads", self.seed, average_axis=0))
            self.rows.add(name, per_layer / h, np.tile(np.arange(1, n_layers + 1), s), sequence=np.repeat(sequences, n_layers),
                          n=h, n_unit="heads")
        return self.rows.frame()
