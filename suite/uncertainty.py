"""Uncertainty of the suite's aggregates: seeded bootstrap intervals over the sampled unit, sentences.

Every aggregate the suite reports is a ratio of sums over probe sequences (clusters): a mean over
tokens, over (sequence, head) pairs or over sequences is ``theta = sum_s a_s / sum_s b_s`` with
``a_s`` the sum of the values in sequence s and ``b_s`` their count. Resampling sequences with
replacement (``B`` replicates, multinomial weights ``w``) gives ``theta* = (w a) / (w b)``; the 95%
interval is the 2.5% and 97.5% percentiles of ``theta*``. A paired difference of two models on the
same sequences resamples both with the same weights, so a model compared with itself has the
interval [0, 0]. NumPy only: the leaderboard uses it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REPLICATES = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """``value`` and its interval [``low``, ``high``] (arrays of one shape), ``n`` units averaged
    (same shape), named ``unit``, from ``clusters`` resampled sequences."""

    value: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: np.ndarray
    unit: str
    clusters: int

    def widened(self, half_width: np.ndarray) -> Estimate:
        """The interval with ``half_width`` added in quadrature on each side (an independent error,
        e.g. the attribution estimator's probe error)."""
        low = self.value - np.sqrt((self.value - self.low) ** 2 + half_width**2)
        high = self.value + np.sqrt((self.high - self.value) ** 2 + half_width**2)
        return Estimate(self.value, low, high, self.n, self.unit, self.clusters)


def resample_weights(clusters: int, replicates: int = REPLICATES, seed: int = 0) -> np.ndarray:
    """(replicates, clusters) multinomial counts: how often each sequence is drawn in a replicate."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(clusters, np.full(clusters, 1 / clusters), size=replicates).astype(np.float64)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def _percentiles(replicates: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    tail = (1 - level) / 2 * 100
    with np.errstate(invalid="ignore"):
        return tuple(np.nanpercentile(replicates, [tail, 100 - tail], axis=0)) if replicates.size else (replicates, replicates)


def cluster_bootstrap(sums: np.ndarray, counts: np.ndarray, unit: str, seed: int = 0,
                      replicates: int = REPLICATES, level: float = LEVEL) -> Estimate:
    """``theta = sum_s sums[s] / sum_s counts[s]`` for every column of ``sums`` (S, ...) (``counts``
    broadcasts against it), with its percentile interval over ``replicates`` resamples of the S
    sequences. One sequence gives a zero-width interval (nothing to resample)."""
    sums = np.asarray(sums, dtype=np.float64)
    counts = np.broadcast_to(np.asarray(counts, dtype=np.float64), sums.shape)
    value = _ratio(sums.sum(0), counts.sum(0))
    weights = resample_weights(len(sums), replicates, seed)
    flat_sums, flat_counts = sums.reshape(len(sums), -1), counts.reshape(len(sums), -1)
    stats = _ratio(weights @ flat_sums, weights @ flat_counts)
    low, high = _percentiles(stats, level)
    n = counts.sum(0).astype(np.int64)
    return Estimate(value, low.reshape(value.shape), high.reshape(value.shape), n, unit, len(sums))


def mean_over_clusters(values: np.ndarray, unit: str, seed: int = 0) -> Estimate:
    """The mean over the leading axis (one value per sequence; NaN left out) with its interval."""
    values = np.asarray(values, dtype=np.float64)
    present = ~np.isnan(values)
    return cluster_bootstrap(np.where(present, values, 0.0), present.astype(np.float64), unit, seed)


def paired_difference(sums_a: np.ndarray, counts_a: np.ndarray, sums_b: np.ndarray, counts_b: np.ndarray,
                      seed: int = 0, replicates: int = REPLICATES, level: float = LEVEL) -> Estimate:
    """``theta_a - theta_b`` on the same S sequences (rows of each array), with the percentile
    interval of the paired bootstrap: both ratios resampled with the same weights."""
    sa, sb = (np.asarray(x, dtype=np.float64) for x in (sums_a, sums_b))
    ca, cb = (np.broadcast_to(np.asarray(c, dtype=np.float64), s.shape) for c, s in ((counts_a, sa), (counts_b, sb)))
    value = _ratio(sa.sum(0), ca.sum(0)) - _ratio(sb.sum(0), cb.sum(0))
    weights = resample_weights(len(sa), replicates, seed)
    flat = [x.reshape(len(sa), -1) for x in (sa, ca, sb, cb)]
    stats = _ratio(weights @ flat[0], weights @ flat[1]) - _ratio(weights @ flat[2], weights @ flat[3])
    low, high = _percentiles(stats, level)
    return Estimate(value, low.reshape(value.shape), high.reshape(value.shape), ca.sum(0).astype(np.int64),
                    "sequences", len(sa))
