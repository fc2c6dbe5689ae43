"""Metric: hidden token attribution (contribution mixing) per layer, from Jacobian block norms."""

from __future__ import annotations

import pandas as pd
import torch

from suite.attribution import contributions, estimate_block_norms, jacobian_block_norms, mixing_summary
from suite.metrics.base import RowBuffer
from suite.specs.hidden_token_attribution import SPEC, AttributionConfig
from suite.trace import BatchTrace, ModelProbe


class AttributionMetric:
    spec = SPEC

    def __init__(self, config: AttributionConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.eligible: list[tuple[int, int]] = []  # (sequence id, n)

    def update(self, batch: BatchTrace) -> None:
        for seq, n in zip(batch.sequence_ids.tolist(), batch.lengths.tolist()):
            if n <= self.config.max_tokens:
                self.eligible.append((seq, n))

    def finish(self, probe: ModelProbe | None) -> pd.DataFrame:
        if probe is None:
            raise ValueError("hidden token attribution needs the model as a function (a ModelProbe)")
        chosen = sorted(self.eligible)[: self.config.max_sequences]
        if not chosen:
            raise ValueError(f"no probe sequence has at most {self.config.max_tokens} tokens for attribution")
        rows = RowBuffer(self.spec.name)
        per_token: dict[str, list[torch.Tensor]] = {"own": [], "own_is_top": [], "entropy": []}
        errors: list[torch.Tensor] = []
        offset_sum: dict[int, torch.Tensor] = {}
        offset_count: dict[int, int] = {}
        for seq, n in chosen:
            products = probe.hidden_size if self.config.method == "exact" else min(self.config.probes, probe.hidden_size)
            x, layers_fn = probe.layers_fn(seq, products)  # per input token
            if self.config.method == "exact":
                norms = jacobian_block_norms(layers_fn, x, self.config.chunk_size)
            else:
                estimate = estimate_block_norms(layers_fn, x, self.config.probes, self.seed + seq, self.config.chunk_size)
                norms = estimate.squared
                errors.append(0.5 * estimate.rel_error.diagonal(dim1=-2, dim2=-1).double())  # (L, n), of the norm
            summary = mixing_summary(contributions(norms, probe.causal), probe.causal)
            n_layers = summary.own.shape[0]
            for name in per_token:
                value = getattr(summary, name).double().mean(-1)
                rows.add(name, value, torch.arange(1, n_layers + 1), sequence=[seq], n_tokens=[n])
                per_token[name].append(getattr(summary, name).double())
            for k in range(-(n - 1), n):
                offset_sum[k] = offset_sum.get(k, 0) + summary.offset_sum[:, k + n - 1].double()
                offset_count[k] = offset_count.get(k, 0) + int(summary.offset_count[k + n - 1])
        layers = torch.arange(1, n_layers + 1)
        n_total = sum(n for _, n in chosen)
        for name, chunks in per_token.items():
            rows.add(name, torch.cat(chunks, dim=1).mean(-1), layers, n_tokens=[n_total])
        if errors:
            rows.add("own_rel_error", torch.cat(errors, dim=1).mean(-1), layers, n_tokens=[n_total])
        for k in sorted(k for k in offset_sum if offset_count[k]):
            rows.add(f"offset:{k:+d}", offset_sum[k] / offset_count[k], layers, n_tokens=[offset_count[k]])
        return rows.frame()
