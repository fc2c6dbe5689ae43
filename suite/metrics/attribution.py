"""Metric: hidden token attribution (contribution mixing) per layer, from Jacobian block norms.

Sequences are attributed one at a time until the last layer's mean own contribution is known to
the target precision (``AttributionConfig``); every aggregate carries its bootstrap interval over
the attributed sequences, and for the estimator also its probe error (a jackknife over the probe
directions, added in quadrature). The estimator's per-token summaries are jackknife bias-corrected
(``k theta - (k - 1) mean_q theta_(q)``): a contribution is a ratio of square roots of unbiased
estimates, biased by O(1/k), and without the correction the probe-error intervals covered the
exact per-layer means of MiniLM in only 83% of cases (97% with it; ``benchmarks``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from suite.attribution import MixingSummary, contributions, estimate_block_norms, jacobian_block_norms, mixing_summary
from suite.metrics.base import RowBuffer, progress_bar
from suite.specs.hidden_token_attribution import SPEC, AttributionConfig
from suite.trace import BatchTrace, ModelProbe
from suite.uncertainty import Estimate, jackknife_half_width, ratio_of_sums

PER_TOKEN = ("own", "own_is_top", "entropy")


@dataclass(frozen=True)
class _Attributed:
    """One attributed sequence: per-layer sums over its tokens of each per-token summary (L,), its
    offset sums (L, 2n-1) and counts, and for the estimator the same sums without each probe (k, L)."""

    sequence: int
    n: int
    sums: dict[str, np.ndarray]
    offset_sum: np.ndarray
    offset_count: np.ndarray
    leave_one_out: dict[str, np.ndarray] | None


def _token_sums(summary: MixingSummary) -> dict[str, np.ndarray]:
    return {name: getattr(summary, name).double().sum(-1).cpu().numpy() for name in PER_TOKEN}


class AttributionMetric:
    spec = SPEC

    def __init__(self, config: AttributionConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.eligible: list[tuple[int, int]] = []  # (sequence id, n)
        self.too_long = 0
        self.d_head: int | None = None

    def update(self, batch: BatchTrace) -> None:
        self.d_head = batch.layers[0].values.shape[-1]
        for seq, n in zip(batch.sequence_ids.tolist(), batch.lengths.tolist(), strict=True):
            if n <= self.config.max_tokens:
                self.eligible.append((seq, n))
            else:
                self.too_long += 1

    def order(self) -> list[tuple[int, int]]:
        """Eligible sequences in corpus order, alternating longer than d_h and not (longer first),
        so that any prefix straddles the head size; the rest of a stratum follows when the other runs out."""
        eligible = sorted(self.eligible)
        long = [e for e in eligible if e[1] > (self.d_head or 0)]
        short = [e for e in eligible if e[1] <= (self.d_head or 0)]
        out = []
        for i in range(max(len(long), len(short))):
            out += long[i : i + 1] + short[i : i + 1]
        return out

    def _attribute(self, probe: ModelProbe, seq: int, n: int) -> _Attributed:
        exact = self.config.method == "exact"
        products = probe.hidden_size if exact else min(self.config.probes, probe.hidden_size)
        x, layers_fn = probe.layers_fn(seq, products)
        leave_one_out = None
        if exact:
            norms = jacobian_block_norms(layers_fn, x, self.config.chunk_size)
        else:
            estimate = estimate_block_norms(layers_fn, x, self.config.probes, self.seed + seq, self.config.chunk_size)
            norms = estimate.squared
            loo = [_token_sums(mixing_summary(contributions(q, probe.causal), probe.causal)) for q in estimate.leave_one_out]
            leave_one_out = {name: np.stack([q[name] for q in loo]) for name in PER_TOKEN}
        summary = mixing_summary(contributions(norms, probe.causal), probe.causal)
        sums = _token_sums(summary)
        if leave_one_out is not None:  # c is a ratio of square roots of unbiased estimates: remove its O(1/k) bias
            k = len(loo)
            sums = {name: k * sums[name] - (k - 1) * leave_one_out[name].mean(0) for name in PER_TOKEN}
        return _Attributed(seq, n, sums, summary.offset_sum.double().cpu().numpy(),
                           summary.offset_count.cpu().numpy(), leave_one_out)

    def _estimates(self, done: list[_Attributed]) -> dict[str, Estimate]:
        """Per-layer means over all attributed tokens with their intervals (bootstrap over sequences,
        widened by the probe error for the estimator)."""
        counts = np.array([[a.n] for a in done], dtype=np.float64)
        out = {}
        for name in PER_TOKEN:
            estimate = ratio_of_sums(np.stack([a.sums[name] for a in done]), counts, "tokens", self.seed)
            if done[0].leave_one_out is not None:
                loo = sum(a.leave_one_out[name] for a in done) / counts.sum()  # (k, L): per-layer means without probe q
                estimate = estimate.widened(jackknife_half_width(loo))
            out[name] = estimate
        return out

    def finish(self, probe: ModelProbe | None) -> pd.DataFrame:
        if probe is None:
            raise ValueError("hidden token attribution needs the model as a function (a ModelProbe)")
        order = self.order()
        if not order:
            raise ValueError(f"no probe sequence has at most {self.config.max_tokens} tokens for attribution")
        done: list[_Attributed] = []
        with progress_bar("attribution", min(len(order), self.config.max_sequences), "sequence") as bar:
            for seq, n in order[: self.config.max_sequences]:
                done.append(self._attribute(probe, seq, n))
                bar.update()
                if len(done) >= self.config.min_sequences:
                    half = self._estimates(done)["own"].half_width[-1]
                    bar.set_postfix_str(f"last-layer own +-{half:.3f}, target {self.config.target_half_width}")
                    if half <= self.config.target_half_width:
                        break
        return self._rows(done, len(order))

    def _rows(self, done: list[_Attributed], eligible: int) -> pd.DataFrame:
        rows = RowBuffer(self.spec.name)
        estimates = self._estimates(done)
        n_layers = len(done[0].sums["own"])
        layers = np.arange(1, n_layers + 1)
        for name, estimate in estimates.items():
            rows.add_estimate(name, estimate, layers)
            for a in done:
                rows.add(name, a.sums[name] / a.n, layers, sequence=[a.sequence], n_tokens=[a.n], n=[a.n], n_unit="tokens")
        if done[0].leave_one_out is not None:
            loo = sum(a.leave_one_out["own"] for a in done) / sum(a.n for a in done)
            rows.add("own_probe_error", jackknife_half_width(loo), layers)
        longest = max(a.n for a in done)
        for k in range(-(longest - 1), longest):
            sums = np.stack([a.offset_sum[:, k + a.n - 1] if abs(k) < a.n else np.zeros(n_layers) for a in done])
            counts = np.array([[a.offset_count[k + a.n - 1] if abs(k) < a.n else 0] for a in done], dtype=np.float64)
            if counts.sum():
                rows.add_estimate(f"offset:{k:+d}", ratio_of_sums(sums, counts, "token pairs", self.seed), layers)
        half = estimates["own"].half_width[-1]
        long = sum(a.n > (self.d_head or 0) for a in done)
        met = len(done) >= self.config.min_sequences and half <= self.config.target_half_width
        reason = ("the target interval was met" if met else
                  "all eligible sequences were used" if len(done) == eligible else
                  f"max_sequences ({self.config.max_sequences}) was reached")
        label = (f"{len(done)} of {eligible} eligible sequences ({long} longer than d_h = {self.d_head} tokens, "
                 f"{len(done) - long} not); last-layer own contribution +-{half:.3f} (target "
                 f"{self.config.target_half_width}); stopped because {reason}")
        rows.add("attributed_sequences", float(len(done)), label=[label], n=[sum(a.n for a in done)], n_unit="tokens")
        rows.add("skipped_sequences", float(self.too_long),
                 label=[f"{self.too_long} probe sequences longer than max_tokens = {self.config.max_tokens}"])
        return rows.frame()
