"""Metric: context-mixing measures per layer, scored against Jacobian attribution.

For each scored sequence: every measure's one-layer matrices (``suite.context_mixing``) and their
rollouts; the attribution ``c^l`` (exact block norms, or estimated) and the one-layer Jacobians
(estimated through each layer alone); per-token agreement of rows. Per layer, the mean over all
scored tokens with its bootstrap interval over sequences.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import torch

from suite.attribution import contributions, estimate_block_norms, jacobian_block_norms
from suite.context_mixing import (
    RAW_PRODUCT,
    ROLLOUT_WITH_IDENTITY,
    agreement,
    decomposed,
    head_mixed,
    local_matrices,
    mixing_ratio,
    rollout,
    row_normalise,
)
from suite.metrics.base import RowBuffer, progress_bar
from suite.specs.context_mixing import MEASURES, SCORES, SPEC, ContextMixingConfig
from suite.trace import BatchTrace, ModelProbe
from suite.uncertainty import ratio_of_sums

AGREEMENT_FIELDS = {"spearman": "spearman", "top_agreement": "top", "own_error": "own_error"}


class ContextMixingMetric:
    spec = SPEC

    def __init__(self, config: ContextMixingConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.eligible: list[tuple[int, int]] = []

    def update(self, batch: BatchTrace) -> None:
        for seq, n in zip(batch.sequence_ids.tolist(), batch.lengths.tolist(), strict=True):
            if 3 <= n <= self.config.max_tokens:
                self.eligible.append((seq, n))

    def _reference(self, probe: ModelProbe, seq: int) -> torch.Tensor:
        """(L, n, n) attribution ``c^l`` of the sequence."""
        if self.config.reference == "exact":
            x, layers_fn = probe.layers_fn(seq, probe.hidden_size)
            norms = jacobian_block_norms(layers_fn, x)
        else:
            x, layers_fn = probe.layers_fn(seq, self.config.probes)
            norms = estimate_block_norms(layers_fn, x, self.config.probes, self.seed + seq).squared
        return contributions(norms, probe.causal)

    def _local_reference(self, layer, causal: bool, seed: int) -> torch.Tensor:
        """(n, n) the one-layer attribution ``||d e_i^l / d e_j^(l-1)||_F`` normalised, estimated."""
        x = layer.residual
        fn = lambda h: layer.block(h).unsqueeze(0)  # noqa: E731  (one "layer" for the estimator)
        norms = estimate_block_norms(fn, x, self.config.probes, seed).squared
        return contributions(norms, causal)[0]

    @torch.no_grad()  # everything here is measured, nothing differentiated by reverse mode
    def finish(self, probe: ModelProbe | None) -> pd.DataFrame:
        if probe is None:
            raise ValueError("context mixing needs the model as a function (a ModelProbe)")
        chosen = sorted(self.eligible)[: self.config.max_sequences]
        if not chosen:
            raise ValueError(f"no probe sequence has 3 to {self.config.max_tokens} tokens for context mixing")
        rows = RowBuffer(self.spec.name)
        sums: dict[str, list[np.ndarray]] = defaultdict(list)  # variant -> per sequence (L,) sums over tokens
        counts: dict[str, list[np.ndarray]] = defaultdict(list)
        example = min(chosen, key=lambda c: (c[1], c[0]))
        with progress_bar("context mixing", len(chosen), "sequence") as bar:
            for seq, n in chosen:
                layers = probe.mixing_layers(seq)
                local = [local_matrices(layer, probe.causal) for layer in layers]
                reference = self._reference(probe, seq)
                local_reference = [self._local_reference(layer, probe.causal, self.seed + seq + 7919 * i)
                                   for i, layer in enumerate(layers)]
                for measure in MEASURES:
                    series = [m[measure] for m in local if measure in m]
                    if len(series) != len(layers):
                        continue
                    rolled = rollout(series, probe.causal, identity=measure in ROLLOUT_WITH_IDENTITY,
                                     normalise_each=measure not in RAW_PRODUCT)
                    for where, matrices, refs in (("", rolled, reference), (":local", series, local_reference)):
                        scored = [agreement(self._normalised(m, measure, where, probe.causal), r, probe.causal)
                                  for m, r in zip(matrices, refs, strict=True)]
                        for score in SCORES:
                            values = np.stack([getattr(a, AGREEMENT_FIELDS[score]).double().numpy()
                                               for a in scored])  # (L, n)
                            present = ~np.isnan(values)
                            sums[f"{measure}{where}/{score}"].append(np.where(present, values, 0).sum(-1))
                            counts[f"{measure}{where}/{score}"].append(present.sum(-1).astype(np.float64))
                    if (seq, n) == example:
                        self._add_matrices(rows, f"matrix:{measure}", rolled, seq)
                ratios = np.stack([mixing_ratio(decomposed(layer, head_mixed(layer.attention.double(),
                                                                              layer.transformed.double())), probe.causal)
                                   .numpy() for layer in layers])
                sums["norm_resln/mixing_ratio"].append(ratios.sum(-1))
                counts["norm_resln/mixing_ratio"].append(np.full(len(layers), float(n)))
                if (seq, n) == example:
                    self._add_matrices(rows, "matrix:attribution", reference, seq)
                bar.update()
        for variant, chunks in sums.items():
            layer_index = np.arange(1, len(chunks[0]) + 1)
            rows.add_estimate(variant, ratio_of_sums(np.stack(chunks), np.stack(counts[variant]), "tokens", self.seed),
                              layer_index)
        return rows.frame()

    @staticmethod
    def _normalised(matrix: torch.Tensor, measure: str, where: str, causal: bool) -> torch.Tensor:
        """GlobEnc's one-layer matrices are raw norms: normalised rows for scoring (as the rollout's)."""
        return row_normalise(matrix, causal) if measure in RAW_PRODUCT and where == ":local" else matrix

    @staticmethod
    def _add_matrices(rows: RowBuffer, variant: str, matrices: torch.Tensor, seq: int) -> None:
        n_layers, n, _ = matrices.shape
        layer, query, key = torch.meshgrid(torch.arange(1, n_layers + 1), torch.arange(n), torch.arange(n), indexing="ij")
        rows.add(variant, matrices.double(), layer, sequence=[seq], n_tokens=[n], query=query, key=key)
