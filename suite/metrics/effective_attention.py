"""Metric: effective attention and its divergence from raw attention, per layer and head."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import torch

from idsuite.suite.effective_attention import argmax_change, null_share, position_mass, row_pearson
from idsuite.suite.metrics.base import RowBuffer, layer_head_grid
from idsuite.suite.metrics.rank_deficiency import COMPUTE_DTYPES
from idsuite.suite.specs.effective_attention import SPEC, EffectiveAttentionConfig
from idsuite.suite.trace import BatchTrace, ModelProbe
from idsuite.suite.uncertainty import ratio_of_sums

PER_SEQUENCE = ("null_share", "pearson", "argmax_change")


class EffectiveAttentionMetric:
    spec = SPEC

    def __init__(self, config: EffectiveAttentionConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.rows = RowBuffer(self.spec)
        self.values: dict[str, list[torch.Tensor]] = defaultdict(list)  # variant -> (B, L, H) per batch
        self.example: tuple[tuple, int, list[str], list[torch.Tensor], list[torch.Tensor]] | None = None
        self.keep: tuple[tuple, int] | None = None  # this batch's example choice, if it replaced the one kept
        self.layer_values: dict[str, list[torch.Tensor]] = defaultdict(list)  # variant -> (B, H) per layer of this batch

    def _example_choice(self, batch: BatchTrace) -> tuple[tuple, int] | None:
        """The batch's best example sequence, if better than the one kept: the longest of at most
        ``map_max_tokens`` tokens (the further past d_h, the larger the null space n - d_h its maps
        show); ties go to the lowest corpus index."""
        best = None
        for b, (seq, n) in enumerate(zip(batch.sequence_ids.tolist(), batch.lengths.tolist(), strict=True)):
            if n > self.config.map_max_tokens:
                continue
            rank = (-n, seq)
            if best is None or rank < best[0]:
                best = (rank, b)
        return best if best is not None and (self.example is None or best[0] < self.example[0]) else None

    def update_layer(self, batch: BatchTrace, index: int) -> None:
        """Layer ``index`` (0-based) of the batch, as the forward pass hands it over."""
        dtype = COMPUTE_DTYPES[self.config.compute_dtype]
        if index == 0:
            self.keep = self._example_choice(batch)
            if self.keep is not None:
                b = self.keep[1]
                self.example = (self.keep[0], batch.sequence_ids[b].item(), batch.tokens[b], [], [])
        layer = index + 1
        allowed = batch.allowed(index)
        projection = batch.projection(index, dtype)  # ranks in ``dtype``; the summaries in float32
        raw, eff = projection.attention.float(), projection.effective.float()
        if self.keep is not None:
            b = self.keep[1]
            n = int(batch.lengths[b])
            self.example[3].append(raw[b, :, :n, :n].cpu())
            self.example[4].append(eff[b, :, :n, :n].cpu())
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
            self.layer_values[name].append(value.cpu())

    def update(self, batch: BatchTrace) -> None:
        """Close the batch: its layers' values (B, L, H) join the sequences'. Layers the trace kept
        (a pass without a ``LayerConsumer``) are read here."""
        for index in range(len(next(iter(self.layer_values.values()), [])), len(batch.layers)):
            self.update_layer(batch, index)
        for name, chunks in self.layer_values.items():
            self.values[name].append(torch.stack(chunks, 1))
        self.layer_values.clear()

    def finish(self, probe: ModelProbe | None) -> pd.DataFrame:
        """Per head, per layer and for the whole model (the mean over layers), each with its bootstrap
        interval over sequences (a head whose value is undefined in a sequence, e.g. a Pearson
        correlation of constant rows, is left out there); and the example sequence's maps."""
        for name, chunks in self.values.items():
            x = torch.cat(chunks).double().numpy()  # (S, L, H)
            present = ~np.isnan(x)
            x = np.where(present, x, 0.0)
            _, n_layers, h = x.shape
            layers, heads = layer_head_grid(n_layers, h)
            self.rows.add_estimate(name, ratio_of_sums(x, present, "sequences", self.seed), layers, heads)
            sums, counts = x.sum(-1), present.sum(-1)  # (S, L): over heads
            self.rows.add_estimate(name, ratio_of_sums(sums, counts, "sequence-heads", self.seed), np.arange(1, n_layers + 1))
            self.rows.add_estimate(name, ratio_of_sums(sums, counts, "sequence-heads", self.seed, average_axis=0))
        if self.example is not None:
            self._add_example(*self.example[1:])
        return self.rows.frame()

    def _add_example(self, seq: int, tokens: list[str], raw: list[torch.Tensor], eff: list[torch.Tensor]) -> None:
        n = len(tokens)
        positions = torch.arange(n)
        self.rows.add("token", torch.zeros(n), sequence=[seq], key=positions, label=tokens, n_tokens=[n])
        heads, query, key = torch.meshgrid(torch.arange(raw[0].shape[0]), positions, positions, indexing="ij")
        for layer, (r, e) in enumerate(zip(raw, eff, strict=True), start=1):
            for name, maps in (("map_raw", r), ("map_eff", e)):
                self.rows.add(name, maps, layer, heads, [seq], [n], query, key)
