"""Metric: context-mixing measures per layer, scored against Jacobian attribution.

For each scored sequence: every measure's one-layer matrices (``idsuite.suite.context_mixing``) and their
rollouts; the attribution ``c^l`` (exact block norms, or estimated) and the one-layer Jacobians
(estimated through each layer alone); per-token agreement of rows. Per layer, the mean over all
scored tokens with its bootstrap interval over sequences. Sequences are scored in corpus order until
the widest of the measures' last-layer Spearman intervals is narrow enough (``ContextMixingConfig``,
``sample_until_precise``); only the example sequence's matrices are kept meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
from idsuite.suite.hidden_token_attribution import (
    Progress,
    contributions,
    estimate_block_norms,
    exact_or_estimate,
    jacobian_block_norms,
    sequence_flops,
)
from idsuite.suite.metrics.base import RowBuffer, progress_bar, sample_until_precise, say, within_budget
from idsuite.suite.specs.context_mixing import MEASURES, SCORES, SPEC, ContextMixingConfig, Measure
from idsuite.suite.trace import BatchTrace, ModelProbe
from idsuite.suite.uncertainty import Estimate, ratio_of_sums

AGREEMENT_FIELDS = {"spearman": "spearman", "top_agreement": "top", "own_error": "own_error"}


@dataclass(frozen=True)
class _Scored:
    """One scored sequence: per variant its per-layer sums over tokens (L,) and the tokens counted
    (L,: a score undefined for a token, e.g. a one-key row's correlation, is not counted); while it
    is the example, its rolled-out matrices and attribution (L, n, n) per ``matrix:`` variant."""

    sequence: int
    n: int
    sums: dict[str, np.ndarray]
    counts: dict[str, np.ndarray]
    matrices: dict[str, torch.Tensor]


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

    def _score(self, probe: ModelProbe, seq: int, n: int, method: str) -> _Scored:
        """Every measure's scores on one sequence, per layer, and its rolled-out matrices with the attribution."""
        layers = probe.mixing_layers(seq)
        local = [local_matrices(layer, probe.causal) for layer in layers]
        products = probe.hidden_size if method == "exact" else min(self.config.probes, probe.hidden_size)
        with progress_bar(f"reference, sequence {seq} ({n} tokens)", n * products, "product") as inner:
            reference = self._reference(probe, seq, method, inner.update)
        local_reference = [self._local_reference(layer, probe.causal, self.seed + seq + 7919 * i)
                           for i, layer in enumerate(layers)]
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, np.ndarray] = {}
        matrices = {"matrix:attribution": reference}
        for measure in MEASURES:
            series = [m[measure.name] for m in local if measure.name in m]
            if len(series) != len(layers):
                continue
            rolled = rollout(series, probe.causal, identity=measure.rollout_identity,
                             normalise_each=not measure.raw_product)
            matrices[f"matrix:{measure.name}"] = rolled
            for where, mixing, refs in (("", rolled, reference), (":local", series, local_reference)):
                scored = [agreement(self._normalised(m, measure, where, probe.causal), r, probe.causal)
                          for m, r in zip(mixing, refs, strict=True)]
                for score in SCORES:
                    values = np.stack([getattr(a, AGREEMENT_FIELDS[score]).double().numpy() for a in scored])  # (L, n)
                    present = ~np.isnan(values)
                    sums[f"{measure.name}{where}/{score}"] = np.where(present, values, 0).sum(-1)
                    counts[f"{measure.name}{where}/{score}"] = present.sum(-1).astype(np.float64)
        ratios = np.stack([mixing_ratio(decomposed(layer, head_mixed(layer.attention.double(),
                                                                      layer.transformed.double())), probe.causal)
                           .numpy() for layer in layers])
        sums["norm_resln/mixing_ratio"] = ratios.sum(-1)
        counts["norm_resln/mixing_ratio"] = np.full(len(layers), float(n))
        return _Scored(seq, n, sums, counts, matrices)

    def _estimates(self, done: list[_Scored]) -> dict[str, Estimate]:
        """Per variant, the per-layer mean over all scored tokens with its bootstrap interval over
        the scored sequences (``ratio_of_sums``: each sequence's sums over its tokens, pooled)."""
        return {variant: ratio_of_sums(np.stack([s.sums[variant] for s in done]),
                                       np.stack([s.counts[variant] for s in done]), "tokens", self.seed)
                for variant in done[0].sums}

    @staticmethod
    def _widest(estimates: dict[str, Estimate]) -> tuple[str, float]:
        """The sample's target: the measure whose last-layer rolled-out Spearman score has the widest
        interval, and that interval's half-width (NaN where no measure has one)."""
        halves = {m.name: float(estimates[f"{m.name}/spearman"].half_width[-1]) for m in MEASURES
                  if f"{m.name}/spearman" in estimates}
        known = {name: half for name, half in halves.items() if not np.isnan(half)}
        return max(known.items(), key=lambda item: item[1]) if known else ("no measure", float("nan"))

    @torch.no_grad()  # everything here is measured, nothing differentiated by reverse mode
    def finish(self, probe: ModelProbe | None) -> pd.DataFrame:
        if probe is None:
            raise ValueError("context mixing needs the model as a function (a ModelProbe)")
        todo = sorted(self.eligible)[: self.config.max_sequences]
        rows = RowBuffer(self.spec)
        if not todo:  # nothing to score is a result (counted, with why), not a failure of the model
            return self._counts(rows, [], "", None).frame()
        method, how = exact_or_estimate(self.config.reference, max(n for _, n in todo), probe.hidden_size,
                                        self.n_layers, self.config.exact_max_flops, self.config.probes,
                                        self.config.max_flops, min(self.config.min_sequences, len(todo)))
        if method != self.config.reference:
            say(self.spec.name, f"reference: {how}")
        if method == "estimate":
            how += " (its probe error is not in the score intervals)"
        d, layers, probes = probe.hidden_size, self.n_layers, self.config.probes
        costs = [sequence_flops(method, n, d, layers, probes) + sequence_flops("estimate", n, d, layers, probes)
                 for _, n in todo]  # the reference's products and the one-layer Jacobians' estimates
        todo, budget = within_budget(self.spec.name, self.config, todo, costs)
        if not todo:
            return self._counts(rows, [], how, None, budget).frame()
        example: list[_Scored] = []  # the shortest scored sequence (then the first), the only one whose matrices are kept

        def score(item: tuple[int, int]) -> _Scored:
            scored = self._score(probe, *item, method)
            if not example or (scored.n, scored.sequence) < (example[0].n, example[0].sequence):
                example[:] = [scored]
            return replace(scored, matrices={})

        done = sample_until_precise(todo, score, lambda done: self._widest(self._estimates(done))[1], self.config,
                                    "context mixing", "widest last-layer Spearman")
        estimates = self._estimates(done)
        for variant, estimate in estimates.items():
            rows.add_estimate(variant, estimate, np.arange(1, len(estimate.value) + 1))
        for variant, matrices in example[0].matrices.items():
            self._add_matrices(rows, variant, matrices, example[0].sequence)
        return self._counts(rows, done, how, self._widest(estimates), budget).frame()  # stopped early: target met

    def _counts(self, rows: RowBuffer, done: list[_Scored], how: str, widest: tuple[str, float] | None,
                budget: str | None = None) -> RowBuffer:
        """How many sequences were scored (which, against what reference, to what precision
        (``widest``: ``_widest``) and why no more: ``budget`` where the cost budget ended the sample)
        and how many were left out, and why."""
        limit = f"3 to {self.config.max_tokens} tokens"
        if done and widest is not None:
            measure, half = widest
            stop = self.config.stop_note(len(done), len(self.eligible),
                                         f"last-layer Spearman of the widest measure ({measure})", half, budget)
            text = (f"{len(done)} of {len(self.eligible)} eligible sequences of {limit}, the first in corpus order "
                    f"(longest {max(s.n for s in done)} tokens); reference: {how}; {stop}")
        elif budget is not None:
            text = f"no sequence scored: {budget}"
        else:
            seen = len(self.too_long) + self.too_short
            text = (f"no sequence scored: none of the {seen} probe sequences has {limit}; a higher --mixing-max-tokens "
                    "scores longer ones (none is truncated)")
        rows.add("scored_sequences", float(len(done)), label=[text], n=[sum(s.n for s in done)], n_unit="tokens")
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
