"""Metric: token identifiability per layer for each mapping g and distance."""

from __future__ import annotations

import pandas as pd
import torch

from suite.identifiability import fit_mapping, identifiability_rate
from suite.masks import token_mask
from suite.metrics.base import RowBuffer
from suite.specs.token_identifiability import SPEC, IdentifiabilityConfig
from suite.trace import BatchTrace, ModelProbe


def pad_stack(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-aligned zero padding of per-sequence tensors (n_i, ...) -> (S, N, ...) and lengths (S,)."""
    lengths = torch.tensor([r.shape[0] for r in rows])
    out = rows[0].new_zeros((len(rows), int(lengths.max()), *rows[0].shape[1:]))
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
    return out, lengths


class IdentifiabilityMetric:
    spec = SPEC

    def __init__(self, config: IdentifiabilityConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.sequences: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id -> (e^0..e^L (L+1, n, d), ids)

    def update(self, batch: BatchTrace) -> None:
        hidden = batch.hidden_states.float().cpu()
        for b, seq in enumerate(batch.sequence_ids.tolist()):
            n = int(batch.lengths[b])
            self.sequences[seq] = (hidden[:, b, :n].clone(), batch.token_ids[b, :n].cpu())

    def _split(self) -> tuple[list[int], list[int]]:
        ids = sorted(self.sequences)
        gen = torch.Generator().manual_seed(self.seed)
        order = [ids[i] for i in torch.randperm(len(ids), generator=gen).tolist()]
        n_train = min(max(1, round(self.config.train_fraction * len(ids))), len(ids) - 1)
        return order[:n_train], order[n_train:]

    def finish(self, probe: ModelProbe | None) -> pd.DataFrame:
        rows = RowBuffer(self.spec.name)
        if len(self.sequences) < 2:
            raise ValueError("token identifiability needs at least two sequences (one to fit, one to score)")
        train, test = self._split()
        train_h = torch.cat([self.sequences[s][0] for s in train], dim=1)  # (L+1, T, d)
        gen = torch.Generator().manual_seed(self.seed)
        sample = torch.randperm(train_h.shape[1], generator=gen)[: self.config.max_train_tokens]
        train_h = train_h[:, sample]
        test_h, lengths = pad_stack([self.sequences[s][0].transpose(0, 1) for s in test])  # (S, N, L+1, d)
        test_ids, _ = pad_stack([self.sequences[s][1] for s in test])
        valid = token_mask(lengths, test_h.shape[1])
        x_test = test_h[:, :, 0]
        for layer in range(train_h.shape[0]):
            for kind in self.config.mappings:
                g = None  # naive and linear g do not depend on the distance: fit once per layer
                for distance in self.config.distances:
                    if g is None or kind == "mlp":
                        g = fit_mapping(
                            kind,
                            train_h[layer],
                            train_h[0],
                            distance,
                            seed=self.seed + layer,
                            mlp_hidden_size=self.config.mlp_hidden_size,
                            mlp_steps=self.config.mlp_steps,
                            mlp_lr=self.config.mlp_lr,
                        )
                    rate = identifiability_rate(g, test_h[:, :, layer], x_test, test_ids, valid, distance)
                    rows.add(f"{kind}/{distance}", rate, layer, n_tokens=[int(valid.sum())])
        return rows.frame()
