"""Feasible attention: every valid attention row that gives a head exactly the same output.

For head h and query row i with allowed keys K (all keys in an encoder, ``j <= i`` in a decoder,
the window in a sliding layer; ``m = |K|``), the model's row ``a = A_h[i, K]`` and

    F_i = { a' in R^m : a' >= 0, sum_j a'_j = 1, (a' - a) T_h[K] = 0 }.

``T_h = (V_h F_h) Z_h^T`` with ``Z_h`` orthonormal columns (``idsuite.suite.null_space.output_factor``),
so ``(a' - a) T_h[K] = 0`` iff ``(a' - a) R = 0`` for the reduced values ``R = V_h[K] F_h``
(m x d_h). With ``C = [R, 1]`` (m x (d_h + 1)) and ``N`` (m x k) an orthonormal basis of the left
null space of ``C`` (``k = m - rank(C)``), every ``a'`` of the affine space
``{a' : C^T a' = C^T a}`` is ``a + N z``, so

    F_i = { a + N z : z in R^k, a + N z >= 0 },

and every quantity below is a linear program in ``z`` over ``-N z <= a`` (scipy's HiGHS): the equality
constraints hold by construction (to the rounding of ``N``), only non-negativity is left to the solver.

- *Dimension*: ``dim F_i = k - rank(N_I)``, ``I`` the keys that are zero in every point of ``F_i``
  (the polytope's implicit equalities). A softmax row is positive, so ``a`` lies in the relative
  interior of ``F_i``, ``I`` is empty and ``dim F_i = k``; a row with weights that underflowed to
  exactly 0 gets ``I`` from one more LP (``implicit_zeros``).
- *Interval* of key j: ``[min, max] a'_j = a_j + [min, max] N_j z`` over ``F_i``.
- *Identifiability* of the most-attended key ``j*`` (the largest ``a_j``, lowest index on ties):
  no ``a'`` in ``F_i`` gives any other key ``k`` at least ``a'_j*``, i.e. ``max (a'_k - a'_j*) < 0``
  for every ``k``. Exact, with two shortcuts that solve no LP: if ``min a'_j* > 1/2`` no other key
  can reach it (the rest sums to below 1/2); and since ``a' - a`` lies in the range of
  ``P = N N^T``, ``a'_k - a'_j* = (a_k - a_j*) - (P a)_k + (P a)_j* + (P_k - P_j*) . a'``, whose
  last term is at most ``max_l (P_kl - P_j*l)`` over the simplex (a superset of ``F_i``): keys
  whose bound is negative cannot reach ``j*`` (over the simplex with ``a'_j*`` held in its
  interval, the term is linear in ``a'_j*``: its larger end). Every other key gets its LP, largest
  bound first; any solved point of ``F_i`` in which another key ties or beats ``j*`` settles it.

The LPs of one row share their constraints: one HiGHS model per row (``highspy``, the solver scipy
vendors, called directly) re-solved for each objective from the previous optimal basis.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass, replace

import highspy
import numpy as np
import scipy.optimize

TOLERANCE = 1e-9
"""Two weights closer than this count as equal (a competing key "reaches" the top key); the LPs
solve non-negativity to 1e-10."""
HIGHS_OPTIONS = {"output_flag": False, "primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


@dataclass(frozen=True)
class FeasibleRow:
    """One attention row's feasible set. Key indices are positions within the row's allowed keys.

    ``top``: ``j*``; ``dimension``: ``dim F_i``; ``keys``: the keys whose interval was computed
    (the most-attended first, by decreasing ``a_j``), with ``low`` and ``high`` their
    ``[min, max] a'_j``; ``identifiable``: no ``a'`` in ``F_i`` gives another key ``>= a'_j*``;
    ``lps``: linear programs solved."""

    top: int
    dimension: int
    keys: np.ndarray
    low: np.ndarray
    high: np.ndarray
    identifiable: bool
    lps: int

    @property
    def width(self) -> float:
        """``max a'_j* - min a'_j*``: how far the most-attended key's weight can move."""
        return float(self.high[0] - self.low[0])


def output_null_basis(reduced: np.ndarray) -> np.ndarray:
    """``N`` (m, k): orthonormal basis of ``{x : x^T R = 0, 1^T x = 0}`` for ``R`` (m, d_h), from the
    SVD of ``C = [R / ||R||_2, 1 / sqrt(m)]`` (columns scaled to at most unit norm, which changes no
    null space); singular values above ``sigma_max * max(m, d_h + 1) * eps`` count (NumPy's rank
    tolerance, float64)."""
    m, d = reduced.shape
    scale = np.linalg.norm(reduced, 2) if reduced.size else 0.0
    c = np.column_stack([reduced / scale if scale > 0 else reduced, np.full(m, 1 / np.sqrt(m))])
    u, s, _ = np.linalg.svd(c, full_matrices=True)
    rank = int((s > s[0] * max(m, d + 1) * np.finfo(np.float64).eps).sum())
    return u[:, rank:]


@functools.cache
def _quiet_banner() -> None:
    """HiGHS prints its banner on standard output (from C, once per process) when the first solver
    is made: make that one with the descriptor pointed at the null device, so ``idsuite run``'s
    tables stay clean."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


class FeasibleSet:
    """``F_i = {a + N z : a + N z >= 0}`` as one HiGHS model (``N z >= -a``, ``z`` free) whose
    objective changes between solves (each starts from the last optimal basis)."""

    def __init__(self, a: np.ndarray, basis: np.ndarray) -> None:
        self.a, self.basis = a, basis
        m, k = basis.shape
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = k, m
        lp.col_cost_ = np.zeros(k)
        lp.col_lower_, lp.col_upper_ = np.full(k, -highspy.kHighsInf), np.full(k, highspy.kHighsInf)
        lp.row_lower_, lp.row_upper_ = -a, np.full(m, highspy.kHighsInf)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.start_ = np.arange(0, m * k + 1, k)
        lp.a_matrix_.index_ = np.tile(np.arange(k), m)
        lp.a_matrix_.value_ = basis.ravel()
        _quiet_banner()
        self.highs = highspy.Highs()
        for option, value in HIGHS_OPTIONS.items():
            self.highs.setOptionValue(option, value)
        self.highs.passModel(lp)
        self.highs.changeObjectiveSense(highspy.ObjSense.kMaximize)
        self.columns = np.arange(k, dtype=np.int32)
        self.solved = 0

    def extreme(self, direction: np.ndarray) -> np.ndarray:
        """The ``a'`` of ``F_i`` that maximises ``direction . a'``."""
        self.highs.changeColsCost(len(self.columns), self.columns, self.basis.T @ direction)
        self.highs.run()
        self.solved += 1
        if self.highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:  # F_i holds a and is bounded
            raise ValueError(f"feasible attention LP failed ({self.highs.modelStatusToString(self.highs.getModelStatus())})")
        return self.a + self.basis @ np.asarray(self.highs.getSolution().col_value)


def implicit_zeros(a: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Keys (a bool mask) that are zero in every point of ``F_i``: only keys with ``a_j = 0`` can be.

    One LP over the cone ``{x = lambda a + N z >= 0, lambda >= 0}`` (Goldman and Tucker): maximise
    ``sum_{j: a_j = 0} y_j`` with ``0 <= y_j <= x_j`` and ``y_j <= 1``. Cone points add and scale, so
    at the optimum ``y_j = 1`` for every zero key that some point of ``F_i`` makes positive and
    ``y_j = 0`` for the rest."""
    zero = a == 0
    z_count, k = int(zero.sum()), basis.shape[1]
    if z_count == 0 or k == 0:
        return zero
    # variables [z (k), lambda, y (z_count)]; rows: -(lambda a_j + N_j z) <= 0 off the zeros, y_j - N_j z <= 0 on them
    rows = np.zeros((len(a), k + 1 + z_count))
    rows[:, :k] = -basis
    rows[~zero, k] = -a[~zero]
    rows[np.flatnonzero(zero), k + 1 + np.arange(z_count)] = 1.0
    cost = np.concatenate([np.zeros(k + 1), -np.ones(z_count)])
    bounds = [(None, None)] * k + [(0, None)] + [(0, 1)] * z_count
    result = scipy.optimize.linprog(cost, A_ub=rows, b_ub=np.zeros(len(a)), bounds=bounds, method="highs",
                                    options={k: v for k, v in HIGHS_OPTIONS.items() if k != "output_flag"})
    if result.status != 0:
        raise ValueError(f"feasible attention LP failed ({result.message})")
    implicit = zero.copy()
    implicit[np.flatnonzero(zero)] = result.x[k + 1:] < 0.5
    return implicit


def feasible_dimension(a: np.ndarray, basis: np.ndarray) -> int:
    """``dim F_i = k - rank(N_I)`` (``I``: ``implicit_zeros``; ``k`` for a positive row)."""
    implicit = implicit_zeros(a, basis)
    if not implicit.any():
        return basis.shape[1]
    return basis.shape[1] - int(np.linalg.matrix_rank(basis[implicit]))


def feasible_row(a: np.ndarray, reduced: np.ndarray, top_keys: int) -> FeasibleRow:
    """``F_i`` of row ``a`` (m,) over its allowed keys, whose reduced values (or rows of ``T_h``) are
    ``reduced`` (m, d_h): its dimension, the intervals of the ``top_keys`` most-attended keys and
    whether the most-attended is identifiable (module docstring)."""
    a = np.asarray(a, dtype=np.float64)
    order = np.argsort(-a, kind="stable")
    top, keys = int(order[0]), order[: max(1, top_keys)]
    basis = output_null_basis(np.asarray(reduced, dtype=np.float64))
    if basis.shape[1] == 0:  # F_i = {a}
        identifiable = bool(np.delete(a, top).max(initial=-np.inf) < a[top] - TOLERANCE)
        return FeasibleRow(top, 0, keys, a[keys], a[keys].copy(), identifiable, 0)
    found = FeasibleSet(a, basis)
    low, high = np.empty(len(keys)), np.empty(len(keys))
    seen = []
    for index, j in enumerate(keys):
        if not np.any(np.abs(basis[j]) > TOLERANCE * 1e-3):  # N_j = 0: a'_j = a_j on all of F_i
            low[index] = high[index] = a[j]
            continue
        unit = np.zeros(len(a))
        unit[j] = 1.0
        seen += [found.extreme(-unit), found.extreme(unit)]
        low[index], high[index] = seen[-2][j], seen[-1][j]
    identifiable = _top_identifiable(found, top, (low[0], high[0]), seen)
    dimension = feasible_dimension(a, basis)
    lps = found.solved + int((a == 0).any())
    return FeasibleRow(top, dimension, keys, np.clip(low, 0, 1), np.clip(high, 0, 1), identifiable, lps)


def _top_identifiable(found: FeasibleSet, top: int, interval: tuple[float, float], seen: list[np.ndarray]) -> bool:
    """Whether no key can reach ``a'_j*`` (module docstring); ``interval``: ``[min, max] a'_j*``,
    ``seen``: points of ``F_i`` already solved for (any that ties or beats ``j*`` settles it)."""
    if interval[0] > 0.5 + TOLERANCE:
        return True
    for point in seen:
        if np.delete(point, top).max(initial=-np.inf) >= point[top] - TOLERANCE:
            return False
    a, basis = found.a, found.basis
    projected = basis @ (basis.T @ a)  # P a
    rows = basis @ basis.T  # P
    gap = rows - rows[top]  # row k: P_k - P_j*
    rest = np.delete(gap, top, axis=1).max(1)
    # (P_k - P_j*) . a' over the simplex with a'_j* in its interval: linear in a'_j*, largest at an end
    largest = np.maximum(*(gap[:, top] * t + rest * (1 - t) for t in interval))
    bound = a - a[top] - projected + projected[top] + largest
    bound[top] = -np.inf
    candidates = np.flatnonzero(bound >= -TOLERANCE)
    for k in candidates[np.argsort(-bound[candidates], kind="stable")]:
        direction = np.zeros(len(a))
        direction[k], direction[top] = 1.0, -1.0
        best = found.extreme(direction)
        if best[k] - best[top] >= -TOLERANCE:
            return False
    return True


def head_rows(attention: np.ndarray, reduced: np.ndarray, allowed: np.ndarray, top_keys: int) -> list[FeasibleRow]:
    """``feasible_row`` for rows of one head: ``attention`` (r, N) the rows ``A_h[i]``, ``reduced``
    (N, d_h) the head's reduced values, ``allowed`` (r, N) each row's keys (a causal row ``j <= i``,
    a sliding one its window). Keys are returned as positions 0..N-1; a row without keys is left out."""
    out = []
    for row, keys in zip(attention, allowed, strict=True):
        positions = np.flatnonzero(keys)
        if len(positions):
            found = feasible_row(row[positions], reduced[positions], top_keys)
            out.append(replace(found, top=int(positions[found.top]), keys=positions[found.keys]))
    return out
