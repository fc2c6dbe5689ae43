"""The bootstrap intervals: nominal coverage on data with a known sampling distribution, exact
zero for a model paired with itself, means over layers, and the jackknife."""

import numpy as np
import pytest

from idsuite.suite.uncertainty import jackknife_half_width, paired_difference, rank_intervals, ratio_of_sums


def clustered_sample(rng, clusters=40, mean=0.5):
    """Sequences of 1..10 tokens; token values N(mu_s, 1) with sequence means mu_s ~ N(mean, 0.3):
    the ratio of sums estimates ``mean``."""
    counts = rng.integers(1, 11, size=clusters)
    mu = rng.normal(mean, 0.3, size=clusters)
    sums = np.array([rng.normal(m, 1.0, size=c).sum() for m, c in zip(mu, counts, strict=True)])
    return sums, counts


def test_the_interval_covers_the_true_value_at_the_nominal_rate():
    covered, trials = 0, 400
    for seed in range(trials):
        sums, counts = clustered_sample(np.random.default_rng(seed))
        estimate = ratio_of_sums(sums, counts, "tokens", seed=seed, replicates=500)
        covered += estimate.low <= 0.5 <= estimate.high
        assert estimate.n == counts.sum() and estimate.clusters == 40
    assert 0.91 <= covered / trials <= 0.98, covered / trials  # nominal 0.95; 400 trials: SE 0.011


def test_a_model_paired_with_itself_differs_by_exactly_zero():
    sums, counts = clustered_sample(np.random.default_rng(1))
    sums = np.stack([sums, 2 * sums], axis=1)  # two layers
    same = paired_difference(sums, counts[:, None], sums, counts[:, None])
    assert np.array_equal(same.value, [0, 0]) and np.array_equal(same.low, [0, 0]) and np.array_equal(same.high, [0, 0])
    shifted = paired_difference(sums + counts[:, None] * 0.1, counts[:, None], sums, counts[:, None])
    assert np.allclose(shifted.value, 0.1) and np.allclose(shifted.low, 0.1) and np.allclose(shifted.high, 0.1)
    noisy = paired_difference(sums + np.random.default_rng(2).normal(size=sums.shape), counts[:, None], sums,
                              counts[:, None])
    assert (noisy.low < noisy.value).all() and (noisy.value < noisy.high).all()


def test_the_mean_over_layers_is_the_mean_of_the_layer_ratios_resampled_together():
    rng = np.random.default_rng(3)
    sums, counts = rng.normal(size=(30, 4)), rng.integers(1, 5, size=(30, 4)).astype(float)
    layers = ratio_of_sums(sums, counts, "tokens", seed=0)
    overall = ratio_of_sums(sums, counts, "tokens", seed=0, average_axis=0)
    assert np.isclose(overall.value, layers.value.mean()) and overall.n == counts.sum()
    assert overall.low < overall.value < overall.high
    assert overall.high - overall.low < (layers.high - layers.low).mean()  # averaging layers narrows it


def test_one_sequence_or_none_measured():
    one = ratio_of_sums(np.array([[3.0]]), np.array([[2.0]]), "tokens")
    assert one.value == 1.5 and one.low == one.high == 1.5  # nothing to resample
    empty = ratio_of_sums(np.zeros((5, 2)), np.zeros((5, 2)), "tokens")
    assert np.isnan(empty.value).all() and np.isnan(empty.low).all()


def test_jackknife_of_a_mean_is_its_t_interval():
    x = np.random.default_rng(4).normal(size=(50, 2))
    leave_one_out = (x.sum(0) - x) / (len(x) - 1)
    expected = 2.009575234489209 * x.std(0, ddof=1) / np.sqrt(len(x))  # t quantile, 49 degrees of freedom
    assert np.allclose(jackknife_half_width(leave_one_out), expected)


def test_rank_intervals_cover_a_known_order_and_join_models_the_data_cannot_separate():
    rng = np.random.default_rng(3)
    sentences = 200
    # five models with true means 0.1, 0.3, 0.5, 0.50, 0.7 (the third and fourth: equal), per-sentence noise 0.2
    truth = np.array([0.1, 0.3, 0.5, 0.5, 0.7])
    counts = rng.integers(5, 15, size=(sentences, 1)).astype(float)  # tokens per sentence, the same for all models
    sums = (truth + rng.normal(0, 0.2, size=(sentences, len(truth)))) * counts
    higher = rank_intervals(sums, counts, higher_is_better=True)
    true_rank = np.array([5, 4, 2, 2, 1])  # ties share the best rank
    assert (higher.low <= true_rank).all() and (true_rank <= higher.high).all()
    assert [(int(a), int(b)) for a, b in zip(higher.low, higher.high, strict=True)][:2] == [(5, 5), (4, 4)]
    assert higher.low[4] == higher.high[4] == 1  # well separated: one rank
    assert higher.low[2] <= 2 and higher.high[2] >= 3 and higher.low[3] <= 2 and higher.high[3] >= 3  # "2-3" both
    lower = rank_intervals(sums, counts, higher_is_better=False)
    assert lower.rank[0] == 1 and lower.rank[4] == 5
    # a slow reference for the point ranks: sort the plain ratios
    means = sums.sum(0) / np.broadcast_to(counts, sums.shape).sum(0)
    assert [int(r) for r in higher.rank] == [1 + int((means > m).sum()) for m in means]


def test_rank_intervals_average_over_layers_and_refuse_several_numbers_per_model():
    rng = np.random.default_rng(0)
    sums = rng.normal(size=(30, 3, 4)) + np.array([0.0, 5.0, 10.0])[None, :, None]  # (S, M, L)
    ranked = rank_intervals(sums, np.ones_like(sums), higher_is_better=True, average_axis=-1)
    assert ranked.rank.tolist() == [3, 2, 1] and ranked.low.tolist() == [3, 2, 1] and ranked.high.tolist() == [3, 2, 1]
    with pytest.raises(ValueError, match="one number per model"):
        rank_intervals(sums, np.ones_like(sums), higher_is_better=True)
