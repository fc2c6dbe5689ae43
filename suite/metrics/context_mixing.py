"""Metric: context-mixing measures per layer, scored against Jacobian attribution.

For each scored sequence: every measure's one-layer matrices (``idsuite.suite.context_mixing``) and their
rollouts; the attribution ``c^l`` (exact block norms, or estimated) and the one-layer Jacobians
(estimated through each layer alone); per-token agreement of rows. Per layer, the mean over all
scored tokens with its bootstrap interval over sequences.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import torch

from idsuite.suite.context_mixing import (
    agreement,
    decomposed,
    head_mixed,
    local_matrices,
    mixing_ratio,
    rollout,
    row_normalise,
)
from idsuite.suite.hidden_token_attribution import Progress, contributions, estimate_block_norms, exact_or_estimate, jacobian_block_norms
from idsuite.suite.metrics.base import RowBuffer, progress_bar, say
from idsuite.suite.specs.context_mixing import MEASURES, SCORES, SPEC, ContextMixingConfig, Measure
from idsuite.suite.trace import BatchTrace, ModelProbe
from idsuite.suite.uncertainty import ratio_of_sums

AGREEMENT_FIELDS = {"spearman": "spearman", "top_agreement": "top", "own_error": "own_error"}


class ContextMixingMetric:
    spec = SPEC

    def __init__(self, config: ContextMixingConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.eligible: list[tuple[int, int]] = []
        self.too_long: list[int] = []  # lengths of the sequences left out for being longer than max_tokens
        self.too_short = 0
        self.n_layers = 0

    def update(self, batch: BatchTrace) -> None:
        self.n_layers = len(batch.layers)
        for seq, n in zip(batch.sequence_ids.tolist(), batch.lengths.tolist(), strict=True):
            if n > self.config.max_tokens:
                self.too_long.append(n)
            elif n < 3:
                self.too_short += 1
            else:
                self.eligible.append((seq, n))

    def _reference(self, probe: ModelProbe, seq: int, method: str, progress: Progress) -> torch.Tensor:
        """(L, n, n) attribution ``c^l`` of the sequence (``method``: exact or estimate)."""
        if method == "exact":
            x, layers_fn = probe.layers_fn(seq, probe.hidden_size)
            norms = jacobian_block_norms(layers_fn, x, progress=progress)
        else:
            x, layers_fn = probe.layers_fn(seq, self.config.probes)
            norms = estimate_block_norms(layers_fn, x, self.config.probes, self.seed + seq, progress=progress).squared
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
        rows = RowBuffer(self.spec)
        if not chosen:  # nothing to score is a result (counted, with why), not a failure of the model
            return self._counts(rows, chosen, "").frame()
        method, how = exact_or_estimate(self.config.reference, max(n for _, n in chosen), probe.hidden_size,
                                        self.n_layers, self.config.exact_max_flops, self.config.probes)
        if method != self.config.reference:
            say(self.spec.name, f"reference: {how}")
        if method == "estimate":
            how += " (its probe error is not in the score intervals)"
        sums: dict[str, list[np.ndarray]] = defaultdict(list)  # variant -> per sequence (L,) sums over tokens
        counts: dict[str, list[np.ndarray]] = defaultdict(list)
        example = min(chosen, key=lambda c: (c[1], c[0]))
        with progress_bar("context mixing", len(chosen), "sequence") as bar:
            for seq, n in chosen:
                layers = probe.mixing_layers(seq)
                local = [local_matrices(layer, probe.causal) for layer in layers]
                products = probe.hidden_size if method == "exact" else min(self.config.probes, probe.hidden_size)
                with progress_bar(f"reference, sequence {seq} ({n} tokens)", n * products, "product") as inner:
                    reference = self._reference(probe, seq, method, inner.update)
                local_reference = [self._local_reference(layer, probe.causal, self.seed + seq + 7919 * i)
                                   for i, layer in enumerate(layers)]
                for measure in MEASURES:
                    series = [m[measure.name] for m in local if measure.name in m]
                    if len(series) != len(layers):
                        continue
                    rolled = rollout(series, probe.causal, identity=measure.rollout_identity,
                                     normalise_each=not measure.raw_product)
                    for where, matrices, refs in (("", rolled, reference), (":local", series, local_reference)):
                        scored = [agreement(self._normalised(m, measure, where, probe.causal), r, probe.causal)
                                  for m, r in zip(matrices, refs, strict=True)]
                        for score in SCORES:
                            values = np.stack([getattr(a, AGREEMENT_FIELDS[score]).double().numpy()
                                               for a in scored])  # (L, n)
                            present = ~np.isnan(values)
                            sums[f"{measure.name}{where}/{score}"].append(np.where(present, values, 0).sum(-1))
                            counts[f"{measure.name}{where}/{score}"].append(present.sum(-1).astype(np.float64))
                    if (seq, n) == example:
                        self._add_matrices(rows, f"matrix:{measure.name}", rolled, seq)
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
        return self._counts(rows, chosen, how).frame()

    def _counts(self, rows: RowBuffer, chosen: list[tuple[int, int]], how: str) -> RowBuffer:
        """How many sequences were scored (which, against what reference) and how many were left out, and why."""
        limit = f"3 to {self.config.max_tokens} tokens"
        if chosen:
            text = (f"{len(chosen)} of {len(self.eligible)} eligible sequences of {limit}, the first in corpus order "
                    f"(longest {max(n for _, n in chosen)} tokens); reference: {how}")
        else:
            seen = len(self.too_long) + self.too_short
            text = (f"no sequence scored: none of the {seen} probe sequences has {limit}; a higher --mixing-max-tokens "
                    "scores longer ones (none is truncated)")
        rows.add("scored_sequences", float(len(chosen)), label=[text], n=[sum(n for _, n in chosen)], n_unit="tokens")
        longer = f"{len(self.too_long)} longer than max_tokens = {self.config.max_tokens}"
        if self.too_long:
            longer += f" (the shortest of them has {min(self.too_long)} tokens)"
        rows.add("skipped_sequences", float(len(self.too_long) + self.too_short),
                 label=[f"{len(self.too_long) + self.too_short} probe sequences left out: {longer}, "
                        f"{self.too_short} shorter than 3 tokens"])
        return rows

    @staticmethod
    def _normalised(matrix: torch.Tensor, measure: Measure, where: str, causal: bool) -> torch.Tensor:
        """A raw product's one-layer matrices (GlobEnc's raw norms): normalised rows for scoring (as the rollout's)."""
        return row_normalise(matrix, causal) if measure.raw_product and where == ":local" else matrix

    @staticmethod
    def _add_matrices(rows: RowBuffer, variant: str, matrices: torch.Tensor, seq: int) -> None:
        n_layers, n, _ = matrices.shape
        layer, query, key = torch.meshgrid(torch.arange(1, n_layers + 1), torch.arange(n), torch.arange(n), indexing="ij")
        rows.add(variant, matrices.double(), layer, sequence=[seq], n_tokens=[n], query=query, key=key)
