"""Metric: effective attention and its divergence from raw attention, per layer and head."""

from __future__ import annotations

from collections import defaultdict
import pandas as pd
import torch

from suite.effective_attention import (
    argmax_change,
    null_share,
    position_mass,
    row_pearson,
)
from suite.metrics.base import RowBuffer
from suite.metrics.rank import COMPUTE_DTYPES
from suite.specs.effective_attention import SPEC, EffectiveAttentionConfig
from suite.trace import BatchTrace, ModelProbe

PER_SEQUENCE = ("null_share", "pearson", "argmax_change")


class EffectiveAttentionMetric:
    spec = SPEC

    def __init__(self, config: EffectiveAttentionConfig, seed: int) -> None:
        self.config = config
        self.rows = RowBuffer(self.spec.name)
        self.sums: dict[tuple[str, int], list[torch.Tensor]] = defaultdict(list)  # (variant, layer) -> (B, H)
        self.example: tuple[int, list[str], list[torch.Tensor], list[torch.Tensor]] | None = None  # seq, tokens, raw, eff

    def update(self, batch: BatchTrace) -> None:
        dtype = COMPUTE_DTYPES[self.config.compute_dtype]
        short = [(s, b) for b, s in enumerate(batch.sequence_ids.tolist()) if batch.lengths[b] <= self.config.map_max_tokens]
        keep = min(short) if short and (self.example is None or min(short)[0] < self.example[0]) else None
        if keep is not None:
            seq, b = keep
            self.example = (seq, batch.tokens[b], [], [])
        for layer in range(1, len(batch.layers) + 1):
            allowed = batch.allowed(layer - 1)
            projection = batch.projection(layer - 1, dtype)  # ranks in ``dtype``; the summaries in float32
            raw, eff = projection.attention.float(), projection.effective.float()
            if keep is not None:
                n = int(batch.lengths[keep[1]])
                self.example[2].append(raw[keep[1], :, :n, :n].cpu())
                self.example[3].append(eff[keep[1], :, :n, :n].cpu())
            b, h = raw.shape[:2]
            seq = batch.sequence_ids.view(-1, 1).expand(b, h)
            heads = torch.arange(h).view(1, -1).expand(b, h)
            n = batch.lengths.view(-1, 1).expand(b, h)
            values = {
                "null_share": null_share(raw, eff),
                "pearson": row_pearson(raw, eff, allowed),
                "argmax_change": argmax_change(raw, eff, allowed),
            }
            positions = torch.stack(list(batch.positions.values()), dim=-1)  # (B, N, P)
            for kind, maps in (("raw", raw), ("eff", eff)):
                for where, mass in zip(batch.positions, position_mass(maps, positions, allowed).unbind(-1), strict=True):
                    values[f"mass_{where}_{kind}"] = mass
            for name, value in values.items():
                if name in PER_SEQUENCE:
                    self.rows.add(name, value, layer, heads, seq, n)
                self.sums[(name, layer)].append(value.cpu())

    def finish(self, probe: ModelProbe | None) -> pd.DataFrame:
        per_variant: dict[str, list[torch.Tensor]] = defaultdict(list)
        for (name, layer), chunks in sorted(self.sums.items()):
            value = torch.cat(chunks)  # (sequences, H)
            self.rows.add(name, value.nanmean(0), layer, torch.arange(value.shape[1]))
            self.rows.add(name, value.nanmean(), layer)
            per_variant[name].append(value)
        for name, values in per_variant.items():
            self.rows.add(name, torch.cat(values).nanmean())
        if self.example is not None:
            self._add_example(*self.example)
        return self.rows.frame()

    def _add_example(self, seq: int, tokens: list[str], raw: list[torch.Tensor], eff: list[torch.Tensor]) -> None:
        n = len(tokens)
        positions = torch.arange(n)
        self.rows.add("token", torch.zeros(n), sequence=[seq], key=positions, label=tokens, n_tokens=[n])
        heads, query, key = torch.meshgrid(torch.arange(raw[0].shape[0]), positions, positions, indexing="ij")
        for layer, (r, e) in enumerate(zip(raw, eff), start=1):
            for name, maps in (("map_raw", r), ("map_eff", e)):
                self.rows.add(name, maps, layer, heads, [seq], [n], query, key)
