"""Feasible attention on constructed heads, against analytic intervals and a vertex enumeration."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from idsuite.suite.feasible_attention import (
    FeasibleSet,
    feasible_dimension,
    feasible_row,
    head_rows,
    implicit_zeros,
    output_null_basis,
)
from idsuite.suite.masks import pair_mask
from idsuite.suite.null_space import reduced_values, value_output_matrix


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def random_row(m, seed, scale=2.0):
    return softmax(scale * np.random.default_rng(seed).normal(size=m))


def vertices(a, t):
    """Every vertex of F = {x >= 0, [T^T; 1^T] x = [T^T; 1^T] a}: the basic feasible solutions,
    enumerated over supports (a slow reference that shares no code with the LPs)."""
    c = np.vstack([t.T, np.ones(len(a))])
    b = c @ a
    rank = np.linalg.matrix_rank(c)
    found = []
    for support in itertools.combinations(range(len(a)), rank):
        cols = c[:, support]
        if np.linalg.matrix_rank(cols) < rank:
            continue
        x_s = np.linalg.lstsq(cols, b, rcond=None)[0]
        x = np.zeros(len(a))
        x[list(support)] = x_s
        if np.abs(c @ x - b).max() < 1e-9 and x.min() > -1e-9:
            found.append(x)
    return np.array(found)


def test_values_of_full_row_rank_leave_no_freedom():
    # n <= d_h, generic values: T_h has full row rank, F_i = {a}
    rng = np.random.default_rng(0)
    for n, d_h in ((3, 8), (8, 8), (9, 8)):  # 9 keys, d_h = 8: [R, 1] still has rank 9
        row = feasible_row(random_row(n, n), rng.normal(size=(n, d_h)), top_keys=3)
        assert row.dimension == 0 and row.width == 0 and row.identifiable and row.lps == 0


def test_all_zero_values_let_every_key_take_any_weight():
    a = random_row(6, 1)
    row = feasible_row(a, np.zeros((6, 4)), top_keys=6)
    assert row.dimension == 5
    np.testing.assert_allclose(row.low, 0, atol=1e-9)
    np.testing.assert_allclose(row.high, 1, atol=1e-9)
    assert not row.identifiable


def test_two_identical_value_rows_trade_mass_exactly():
    rng = np.random.default_rng(2)
    values = rng.normal(size=(6, 8))
    values[4] = values[1]  # keys 1 and 4: the only freedom is e_1 - e_4
    a = random_row(6, 3)
    row = feasible_row(a, values, top_keys=6)
    assert row.dimension == 1
    by_key = {int(k): (lo, hi) for k, lo, hi in zip(row.keys, row.low, row.high, strict=True)}
    for k in (1, 4):
        np.testing.assert_allclose(by_key[k], (0, a[1] + a[4]), atol=1e-12)
    for k in (0, 2, 3, 5):
        np.testing.assert_allclose(by_key[k], (a[k], a[k]), atol=1e-12)


def test_a_heavy_duplicate_can_take_the_top_from_the_argmax():
    # key 0 has the most weight, but keys 1 and 2 share their values: 2 can take 1's weight and overtake 0
    values = np.random.default_rng(4).normal(size=(5, 8))
    values[2] = values[1]
    a = np.array([0.4, 0.3, 0.2, 0.05, 0.05])
    row = feasible_row(a, values, top_keys=1)
    assert row.top == 0 and row.width == 0 and not row.identifiable
    a = np.array([0.55, 0.2, 0.15, 0.05, 0.05])  # 0.35 < 0.55: the top cannot be reached
    assert feasible_row(a, values, top_keys=1).identifiable


def test_lp_solutions_keep_the_head_output_and_are_distributions():
    rng = np.random.default_rng(5)
    n, d_h, d = 30, 6, 16
    v, w_out = rng.normal(size=(n, d_h)), rng.normal(size=(d_h, d))
    t = v @ w_out
    a = random_row(n, 6)
    basis = output_null_basis(t)
    assert basis.shape[1] == n - d_h - 1
    found = FeasibleSet(a, basis)
    for j in range(5):
        for sign in (1, -1):
            direction = np.zeros(n)
            direction[j] = sign
            x = found.extreme(direction)
            assert np.abs(x @ t - a @ t).max() < 1e-9 * np.abs(a @ t).max()
            assert x.min() >= -1e-9 and abs(x.sum() - 1) < 1e-9


def test_reduced_values_give_the_same_set_as_the_value_output_matrix():
    g = torch.Generator().manual_seed(7)
    values = torch.randn(1, 1, 20, 4, generator=g, dtype=torch.float64)
    w_out = torch.randn(1, 4, 12, generator=g, dtype=torch.float64)
    t = value_output_matrix(values, w_out)[0, 0].numpy()
    reduced = reduced_values(values, w_out, torch.float64)[0, 0].numpy()
    a = random_row(20, 8)
    x, y = feasible_row(a, t, 4), feasible_row(a, reduced, 4)
    assert x.dimension == y.dimension == 15
    np.testing.assert_allclose(x.low, y.low, atol=1e-9)
    np.testing.assert_allclose(x.high, y.high, atol=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_intervals_dimension_and_identifiability_agree_with_vertex_enumeration(seed):
    rng = np.random.default_rng(seed)
    n, d_h = 7, 2
    t = rng.normal(size=(n, d_h)) @ rng.normal(size=(d_h, 5))
    a = random_row(n, 10 + seed, scale=1.5)
    check_against_vertices(a, t)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 7), d_h=st.integers(1, 4), seed=st.integers(0, 10_000), scale=st.floats(0.1, 4.0))
def test_random_heads_agree_with_vertex_enumeration(n, d_h, seed, scale):
    rng = np.random.default_rng(seed)
    a = random_row(n, seed + 1, scale)
    check_against_vertices(a, rng.normal(size=(n, d_h)))


def check_against_vertices(a, t):
    row = feasible_row(a, t, top_keys=len(a))
    corners = vertices(a, t)
    for k, lo, hi in zip(row.keys, row.low, row.high, strict=True):
        assert lo == pytest.approx(corners[:, k].min(), abs=1e-8)
        assert hi == pytest.approx(corners[:, k].max(), abs=1e-8)
    # a linear function is largest at a vertex: the top key is reachable iff a vertex ties or beats it
    others = np.delete(corners, row.top, axis=1)
    assert row.identifiable == bool((others.max(1) < corners[:, row.top] - 1e-9).all())
    alone = feasible_row(a, t, top_keys=1)  # the default: fewer solved points, the bounds and LPs decide
    assert alone.identifiable == row.identifiable and alone.width == pytest.approx(row.width, abs=1e-9)
    hull = np.linalg.matrix_rank(corners - corners[0], tol=1e-9) if len(corners) > 1 else 0
    assert row.dimension == hull


def test_zero_weights_that_no_feasible_row_can_raise_lower_the_dimension():
    # the output is 0 and keys 1, 2 have value 1: a'_1 + a'_2 = 0 forces both to 0, though the
    # equality constraints alone leave the direction e_1 - e_2; F = {a}
    t = np.array([[0.0], [1.0], [1.0]])
    a = np.array([1.0, 0.0, 0.0])
    basis = output_null_basis(t)
    assert basis.shape[1] == 1
    assert implicit_zeros(a, basis).tolist() == [False, True, True]
    assert feasible_dimension(a, basis) == 0
    # a zero weight that some feasible row makes positive is no implicit zero: key 2 of
    # t = [1, 0, 1 / 2] can take weight from keys 0 and 1 (a'_0 + a'_2 / 2 = 1 / 2)
    t = np.array([[1.0], [0.0], [0.5]])
    a = np.array([0.5, 0.5, 0.0])
    basis = output_null_basis(t)
    assert not implicit_zeros(a, basis).any()
    corners = vertices(a, t)
    assert feasible_dimension(a, basis) == np.linalg.matrix_rank(corners - corners[0], tol=1e-9) == 1


def test_a_causal_row_uses_only_its_prefix_and_a_window_only_its_window():
    rng = np.random.default_rng(9)
    n = 12
    reduced = rng.normal(size=(n, 3))
    attention = np.stack([softmax(rng.normal(size=n)) for _ in range(n)])
    for causal, window in ((True, None), (False, 4), (True, 3)):
        allowed = pair_mask(torch.tensor([n]), n, causal, window)[0].numpy()
        masked = np.where(allowed, attention, 0)
        masked /= masked.sum(1, keepdims=True)
        rows = head_rows(masked, reduced, allowed, top_keys=n)
        assert len(rows) == n
        for i, row in enumerate(rows):
            assert sorted(row.keys.tolist()) == np.flatnonzero(allowed[i]).tolist()  # never a key outside
            keys = np.flatnonzero(allowed[i])
            expected = feasible_row(masked[i, keys], reduced[keys], top_keys=n)
            np.testing.assert_allclose(row.high, expected.high, atol=1e-12)
            assert row.dimension == max(0, len(keys) - 4)  # [R, 1] has rank min(|K|, 4) for generic values
