"""Uncertainty of the suite's aggregates: seeded bootstrap intervals over the sampled unit, sentences.

Every aggregate the suite reports is built from ratios of sums over probe sequences (the clusters):
a mean over tokens, over (sequence, head) pairs or over sequences is ``theta = sum_s a_s / sum_s b_s``
with ``a_s`` the sum of the values in sequence s and ``b_s`` their count; a whole-model headline is
the mean over layers of such ratios. Resampling the S sequences with replacement (``B`` replicates,
multinomial weights ``w`` of shape (B, S)) gives ``theta* = (w a) / (w b)``, and the 95% interval is
the 2.5% and 97.5% percentiles of ``theta*`` (the percentile bootstrap). A paired difference of two
models on the same sequences resamples both with the same weights, so a model compared with itself
has the interval [0, 0]. NumPy only: the leaderboard uses it without torch.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

REPLICATES = 1000
LEVEL = 0.95
MIN_CLUSTERS = 10
"""Below this many resampled sentences a percentile bootstrap is no 95% interval (over one sentence
it is [v, v]; over three, the replicates take at most ten distinct values): the leaderboard and the
paper export then show the value alone and say why."""


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

    @property
    def half_width(self) -> np.ndarray:
        return (self.high - self.low) / 2

    def widened(self, half_width: np.ndarray) -> Estimate:
        """The interval with ``half_width`` added in quadrature on each side: an independent error,
        e.g. the attribution estimator's probe error."""
        low = self.value - np.sqrt((self.value - self.low) ** 2 + half_width**2)
        high = self.value + np.sqrt((self.high - self.value) ** 2 + half_width**2)
        return Estimate(self.value, low, high, self.n, self.unit, self.clusters)


@functools.lru_cache(maxsize=2)
def resample_weights(clusters: int, replicates: int = REPLICATES, seed: int = 0) -> np.ndarray:
    """(replicates, clusters) multinomial counts: how often each sequence is drawn in a replicate.
    Read-only and cached (the last two, 8 bytes x replicates x clusters each): a metric resamples
    the same sequences for every variant and layer."""
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(clusters, np.full(clusters, 1 / clusters), size=replicates).astype(np.float64)
    weights.flags.writeable = False
    return weights


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, np.nan)


def _mean(x: np.ndarray, axis: int | None) -> np.ndarray:
    if axis is None:
        return x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN slice stays NaN
        return np.nanmean(x, axis=axis)


def _bootstrap(statistic: Callable[[np.ndarray], np.ndarray], clusters: int, seed: int, replicates: int,
               level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``statistic(w)`` for the plain weights (all ones) and for ``replicates`` resamples; its value
    and percentile interval."""
    value = statistic(np.ones((1, clusters)))[0]
    stats = statistic(resample_weights(clusters, replicates, seed))
    tail = (1 - level) / 2 * 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (nothing measured) stay NaN
        low, high = np.nanpercentile(stats, [tail, 100 - tail], axis=0)
    return value, low, high


def _weighted_ratio(sums: np.ndarray, counts: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    flat_sums, flat_counts = sums.reshape(len(sums), -1), counts.reshape(len(sums), -1)
    return lambda w: _ratio(w @ flat_sums, w @ flat_counts).reshape(len(w), *sums.shape[1:])


def ratio_of_sums(sums: np.ndarray, counts: np.ndarray, unit: str, seed: int = 0, average_axis: int | None = None,
                  replicates: int = REPLICATES, level: float = LEVEL) -> Estimate:
    """``theta = sum_s sums[s] / sum_s counts[s]`` for every entry of ``sums`` (S, ...) (``counts``
    broadcasts against it), with its percentile interval over resamples of the S sequences. With
    ``average_axis`` (an axis of the entries, e.g. layers), the mean of those ratios along it,
    resampled as one statistic. ``n``: the units averaged (the counts' total)."""
    sums = np.asarray(sums, dtype=np.float64)
    counts = np.broadcast_to(np.asarray(counts, dtype=np.float64), sums.shape)
    ratios = _weighted_ratio(sums, counts)
    axis = None if average_axis is None else (average_axis % (sums.ndim - 1)) + 1
    value, low, high = _bootstrap(lambda w: _mean(ratios(w), axis), len(sums), seed, replicates, level)
    n = counts.sum(0) if axis is None else counts.sum(0).sum(axis - 1)
    return Estimate(value, low, high, n.astype(np.int64), unit, len(sums))


def paired_difference(sums_a: np.ndarray, counts_a: np.ndarray, sums_b: np.ndarray, counts_b: np.ndarray,
                      seed: int = 0, average_axis: int | None = None, replicates: int = REPLICATES,
                      level: float = LEVEL) -> Estimate:
    """``theta_a - theta_b`` (each a ``ratio_of_sums``) on the same S sequences (the rows of each
    array), with the percentile interval of the paired bootstrap: both resampled with the same
    weights. ``n``: the sequences."""
    a, b = (np.asarray(x, dtype=np.float64) for x in (sums_a, sums_b))
    ca, cb = (np.broadcast_to(np.asarray(c, dtype=np.float64), s.shape) for c, s in ((counts_a, a), (counts_b, b)))
    ra, rb = _weighted_ratio(a, ca), _weighted_ratio(b, cb)
    axis = None if average_axis is None else (average_axis % (a.ndim - 1)) + 1
    value, low, high = _bootstrap(lambda w: _mean(ra(w) - rb(w), axis), len(a), seed, replicates, level)
    return Estimate(value, low, high, np.full(np.shape(value), len(a), dtype=np.int64), "sequences", len(a))


def jackknife_half_width(leave_one_out: np.ndarray, level: float = LEVEL) -> np.ndarray:
    """Half-width of a ``level`` interval from ``k`` leave-one-out values along axis 0: Student's t
    quantile with ``k - 1`` degrees of freedom times the jackknife standard error
    ``sqrt((k - 1) / k * sum_q (theta_(q) - mean)^2)``."""
    import scipy.stats  # here, not at the top: a second of import that reading results never needs

    k = len(leave_one_out)
    if k < 2:
        return np.full(leave_one_out.shape[1:], np.nan)
    spread = leave_one_out - leave_one_out.mean(0)
    return scipy.stats.t.ppf(1 - (1 - level) / 2, k - 1) * np.sqrt((k - 1) / k * (spread**2).sum(0))


@dataclass(frozen=True)
class RankEstimate:
    """Each model's rank (1 = best) and the 95% interval of its rank over bootstrap replicates:
    ``rank``, ``low``, ``high`` integer arrays of shape (M,), from ``clusters`` resampled sequences."""

    rank: np.ndarray
    low: np.ndarray
    high: np.ndarray
    clusters: int


def _ranks(stats: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """(..., M) statistics -> ranks 1..M along the last axis: 1 + the models strictly better (ties
    share the best rank; a missing value ranks last)."""
    x = np.where(np.isnan(stats), -np.inf if higher_is_better else np.inf, stats)
    better = x[..., None, :] > x[..., :, None] if higher_is_better else x[..., None, :] < x[..., :, None]
    return 1 + better.sum(-1)


def rank_intervals(sums: np.ndarray, counts: np.ndarray, higher_is_better: bool, seed: int = 0,
                   average_axis: int | None = None, replicates: int = REPLICATES, level: float = LEVEL) -> RankEstimate:
    """Ranks of M models measured on the same S sequences: ``sums`` (S, M, ...) and ``counts`` (same
    shape, or broadcasting) give each model's ``ratio_of_sums`` (averaged along ``average_axis`` of
    the entries after the model axis, e.g. layers). Every replicate redraws the sequences once for
    all models (as the paired bootstrap does) and ranks them; the interval is the 2.5% and 97.5%
    percentiles of each model's ranks (rounded outwards), so models the data cannot separate share
    overlapping intervals ("1-3")."""
    sums = np.asarray(sums, dtype=np.float64)
    counts = np.broadcast_to(np.asarray(counts, dtype=np.float64), sums.shape)
    ratios = _weighted_ratio(sums, counts)
    extra = tuple(range(2, sums.ndim))  # entry axes after the model axis, in the (B, M, ...) statistic
    axis = None if average_axis is None else (average_axis % (sums.ndim - 2)) + 2

    def statistic(w: np.ndarray) -> np.ndarray:
        stats = _mean(ratios(w), axis)
        if stats.ndim > 2:
            raise ValueError(f"one number per model is ranked: average over axes {extra} or pass a (S, M) array")
        return stats

    point = _ranks(statistic(np.ones((1, len(sums))))[0], higher_is_better)
    ranks = _ranks(statistic(resample_weights(len(sums), replicates, seed)), higher_is_better)
    tail = (1 - level) / 2 * 100
    low = np.percentile(ranks, tail, axis=0, method="lower").astype(np.int64)
    high = np.percentile(ranks, 100 - tail, axis=0, method="higher").astype(np.int64)
    return RankEstimate(point, low, high, len(sums))
