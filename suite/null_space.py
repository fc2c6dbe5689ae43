"""Column space of each head's value-output matrix ``T_h = V_h W_O^h`` and projections onto it.

The left null space of ``T_h`` (dimension ``n - rank(T_h)``) is the freedom in ``A_h`` that leaves
the head's output ``A_h T_h`` unchanged; projecting the rows of ``A_h`` onto the column space of
``T_h`` removes it (docs/metrics.md, rank deficiency). A row that may only use some keys (causal or sliding
window attention) is projected onto the column space of ``T_h`` restricted to those keys: row i
of a decoder onto ``col(T_h[:i+1])``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

MAX_CHUNK_ELEMENTS = 1 << 24
"""Upper bound on the elements of the stacked per-row matrices decomposed at once."""


@dataclass(frozen=True)
class ColumnSpace:
    """Column space of ``T_h`` for a batch of sequences and heads.

    ``basis`` (B, H, N, k): orthonormal columns spanning the column space of ``T_h`` (columns past
    ``rank`` zeroed), so ``basis @ basis^T`` is the orthogonal projector onto it (``U_h U_h^T``).
    ``rank`` (B, H): numerical rank ``r_h``.
    """

    basis: torch.Tensor
    rank: torch.Tensor


@dataclass(frozen=True)
class Projection:
    """Effective attention of a batch of heads, with the rank of each row's ``T_h``.

    ``effective`` (B, H, N, N): ``A_eff``, row i of ``A_h`` projected onto the column space of ``T_h``
    restricted to the keys row i may use; ``row_rank`` (B, H, N): that rank; ``context`` (B, N): how
    many keys row i may use (0 on padded rows), so ``context - row_rank`` is row i's null dimension;
    ``attention`` (B, H, N, N): ``A_h`` itself, zero outside the allowed pairs (what ``A_eff`` is
    compared with), in the dtype of ``effective``.
    """

    effective: torch.Tensor
    row_rank: torch.Tensor
    context: torch.Tensor
    attention: torch.Tensor


def rank_tolerance(sigma_max: torch.Tensor, n: torch.Tensor, d: int, dtype: torch.dtype) -> torch.Tensor:
    """Rank threshold ``sigma_max * max(n, d) * eps(dtype)`` (NumPy's ``matrix_rank`` default)."""
    return sigma_max * torch.clamp(n, min=d).to(sigma_max.dtype) * torch.finfo(dtype).eps


def value_output_matrix(values: torch.Tensor, w_out: torch.Tensor) -> torch.Tensor:
    """``T_h = V_h W_O^h``: values (B, H, N, d_h) and output rows (H, d_h, d) -> (B, H, N, d)."""
    return torch.einsum("bhnk,hkd->bhnd", values, w_out.to(values.dtype))


def output_factor(w_out: torch.Tensor) -> torch.Tensor:
    """``F_h = P_h S_h`` (H, d_h, d_h) from the reduced SVD ``W_O^h = P_h S_h Z_h^T`` (float64).

    ``T_h = (V_h F_h) Z_h^T`` and ``Z_h`` has orthonormal columns, so ``V_h F_h`` has the singular
    values and left singular vectors of ``T_h`` without forming the (n x d) matrix. ``W_O`` is fixed
    per model: compute this once per layer, not per batch.
    """
    p, s, _ = torch.linalg.svd(w_out.double(), full_matrices=False)
    return p * s.unsqueeze(-2)


def reduced_values(
    values: torch.Tensor, w_out: torch.Tensor, compute_dtype: torch.dtype, factor: torch.Tensor | None = None
) -> torch.Tensor:
    """``V_h F_h`` (B, H, N, d_h): the same singular values and column space as ``T_h`` (see
    ``output_factor``; ``factor`` is that of ``w_out``, computed here if not given)."""
    f = output_factor(w_out) if factor is None else factor
    return values.to(compute_dtype) @ f.to(device=values.device, dtype=compute_dtype).unsqueeze(0)


def _rank(s: torch.Tensor, n: torch.Tensor, d: int, dtype: torch.dtype) -> torch.Tensor:
    """Numerical rank from descending singular values ``s`` (..., k) of matrices with n rows."""
    return (s > rank_tolerance(s[..., 0], n, d, dtype).unsqueeze(-1)).sum(-1)


def _leading_columns(u: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
    """``u`` (..., N, k) with the columns past ``rank`` (...) zeroed."""
    keep = torch.arange(u.shape[-1], device=u.device) < rank.unsqueeze(-1)
    return u * keep.unsqueeze(-2).to(u.dtype)


def _rank_and_basis(matrices: torch.Tensor, n: torch.Tensor, d: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Basis (leading left singular vectors, columns past the rank zeroed) and rank by SVD."""
    u, s, _ = torch.linalg.svd(matrices, full_matrices=False)
    rank = _rank(s, n, d, dtype)
    return _leading_columns(u, rank), rank


def _padded_row_gram(rows: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gram ``X X^T`` (..., m, m) of the ``present`` (..., m) rows of ``rows`` (..., m, k; absent rows
    zero) with the absent rows' diagonal set to the trace, so ``_certified_cholesky`` can certify the
    present rows alone; and that trace (...)."""
    gram = rows @ rows.mT
    trace = gram.diagonal(dim1=-2, dim2=-1).sum(-1)
    return gram + torch.diag_embed((~present).to(gram.dtype) * trace.unsqueeze(-1)), trace


CONDITION_LIMIT = 1e4
"""Heads worse conditioned than this (``sigma_max / sigma_min`` of the decomposed rows) do not get
the cheap bases of Cholesky QR and ``_saturated_prefix_rows``: an encoder head gets an SVD, a causal
row of known full rank a Householder QR of its own prefix (``project_attention``)."""


def _certified_cholesky(
    gram: torch.Tensor, trace: torch.Tensor, n: torch.Tensor, k: int, dtype: torch.dtype, tolerance_sq: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``L^{-1}`` for the Cholesky factor ``L`` of each Gram matrix ``X^T X`` or ``X X^T`` (..., m, m)
    of an (n x k) ``X``; whether its smallest eigenvalue is certainly above ``tolerance_sq`` (a
    squared rank tolerance, in the Gram's units: ``X`` has full rank m); and whether ``X`` is also
    conditioned well enough for Cholesky QR.

    ``lambda_min = sigma_min(L)^2 >= 1 / ||L^{-1}||_F^2``. Full rank is certified when this bound
    exceeds four times the rounding of the Gram and its factorisation (``(n + k) eps tr``) plus
    ``tolerance_sq``; the conditioning when it also exceeds ``tr / CONDITION_LIMIT^2``. ``trace``
    (...) is the Gram's trace without any padding added to ``gram`` (padding rows and columns carry
    a diagonal >= trace, which only lowers the bound).
    """
    m = gram.shape[-1]
    eps = torch.finfo(dtype).eps
    factor, info = torch.linalg.cholesky_ex(gram)
    eye = torch.eye(m, dtype=gram.dtype, device=gram.device)
    factor = torch.where((info == 0).view(*info.shape, 1, 1), factor, eye)
    inverse = torch.linalg.solve_triangular(factor, eye, upper=False)
    bound = 1 / inverse.square().sum((-1, -2))
    needed = 4 * ((n.to(gram.dtype) + k) * eps * trace + tolerance_sq)
    full_rank = (info == 0) & (bound > needed)
    return inverse, full_rank, full_rank & (bound > trace / CONDITION_LIMIT**2)


def _cholesky_qr(m: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """Q of ``M = Q R`` (..., N, k) as ``M L^{-T}``, from ``L^{-1}`` of the Cholesky factor of ``M^T M``.

    One pass loses orthogonality ~ ``cond(M)^2 eps``: at most 2e-8 in float64 for the matrices
    ``_certified_cholesky`` admits (``cond <= CONDITION_LIMIT``), below float32 rounding; in lower
    precision a second pass (CholeskyQR2) restores it.
    """
    q = m @ inverse.mT
    if m.dtype == torch.float64:
        return q
    eye = torch.eye(m.shape[-1], dtype=m.dtype, device=m.device)
    return q @ torch.linalg.solve_triangular(torch.linalg.cholesky(q.mT @ q), eye, upper=False).mT


def column_space(
    values: torch.Tensor,
    w_out: torch.Tensor,
    lengths: torch.Tensor,
    compute_dtype: torch.dtype = torch.float64,
    factor: torch.Tensor | None = None,
) -> ColumnSpace:
    """Column space of ``T_h`` over whole sequences (every row may use every key).

    ``T_h`` has the rank and column space of ``M = V_h F_h`` (``output_factor``). Most heads have
    full rank ``min(n, k)`` far above the tolerance; ``_certified_cholesky`` proves it from the
    k x k Gram of V's columns (n >= k) or rows (n < k). As ``sigma_min(V F) >= sigma_min(V)
    sigma_min(F)`` and ``sigma_max(V F)^2 <= tr(V^T V) sigma_max(F)^2``, the tolerance in V's units
    grows by ``cond(F_h)``. An invertible ``F_h`` does not change the column space, so the basis is
    then Q of V's Cholesky QR (full column rank) or the n unit vectors (full row rank: no null
    space). Every other head (rank-deficient, badly conditioned) gets an SVD of M: rank from its
    singular values, basis its leading left singular vectors. ``values`` must be zero on padded rows
    (row index >= ``lengths[b]``); zero rows change neither the rank nor the column space, and the
    rank tolerance uses each sequence's own ``n = lengths[b]``.
    """
    v = values.to(compute_dtype)
    f = (output_factor(w_out) if factor is None else factor).to(device=v.device, dtype=compute_dtype)  # (H, k, k)
    f_s = torch.linalg.vector_norm(f, dim=-2)  # F = P S with P orthogonal: its singular values are S, its column norms
    f_condition = torch.where(f_s.amin(-1) > 0, f_s.amax(-1) / f_s.amin(-1), torch.inf)  # (H,)
    eps = torch.finfo(compute_dtype).eps
    b, h, n_max, k = v.shape
    d = w_out.shape[-1]
    n = lengths.to(v.device)
    width = min(n_max, k)
    tall = n >= k
    if tall.any():
        vt = v if tall.all() else v[tall]
        gram = vt.mT @ vt
        trace = gram.diagonal(dim1=-2, dim2=-1).sum(-1)
        tolerance_sq = (n[tall].view(-1, 1).clamp(min=d) * eps * f_condition) ** 2 * trace
        inverse, _, ok = _certified_cholesky(gram, trace, n[tall].view(-1, 1), k, compute_dtype, tolerance_sq)
        if ok.all():
            part = _cholesky_qr(vt, inverse)
        else:
            part = torch.zeros_like(vt)
            part[ok] = _cholesky_qr(vt[ok], inverse[ok])
        if tall.all() and ok.all():  # the common case: every head certified, nothing to scatter
            return ColumnSpace(basis=part, rank=torch.full((b, h), k, device=v.device))
    basis = torch.zeros(b, h, n_max, width, dtype=v.dtype, device=v.device)
    rank = torch.zeros(b, h, dtype=torch.long, device=v.device)
    certified = torch.zeros(b, h, dtype=torch.bool, device=v.device)
    if tall.any():
        basis[tall], rank[tall], certified[tall] = part, torch.where(ok, k, 0), ok
    short = ~tall & (n > 0)
    if short.any():
        vs = v[short][:, :, :width]  # rows past n are zero
        rows = torch.arange(width, device=v.device) < n[short].view(-1, 1)  # (B', width)
        gram, trace = _padded_row_gram(vs, rows.unsqueeze(1))
        tolerance_sq = (n[short].view(-1, 1).clamp(min=d) * eps * f_condition) ** 2 * trace
        _, ok, _ = _certified_cholesky(gram, trace, n[short].view(-1, 1), k, compute_dtype, tolerance_sq)
        unit = torch.diag_embed(rows.to(v.dtype))  # (B', width, width): e_i for i < n
        unit = torch.cat([unit, unit.new_zeros(unit.shape[0], n_max - width, width)], dim=1)
        basis[short] = torch.where(ok.view(*ok.shape, 1, 1), unit.unsqueeze(1), 0.0)
        rank[short], certified[short] = torch.where(ok, n[short].view(-1, 1), 0), ok
    other = ~certified & (n > 0).view(-1, 1)
    if other.any():
        m = v[other] @ f[other.nonzero()[:, 1]]
        rest_basis, rest_rank = _rank_and_basis(m, n.view(-1, 1).expand(b, h)[other], d, compute_dtype)
        basis[other], rank[other] = rest_basis, rest_rank
    return ColumnSpace(basis=basis, rank=rank)


def project_rows(attention: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``A U U^T``: each row of ``A`` (B, H, N, N) projected onto span(``basis``) (B, H, N, k)."""
    b = basis.to(attention.dtype)
    return (attention @ b) @ b.transpose(-1, -2)


@dataclass(frozen=True)
class DuplicateRows:
    """Exact duplicates among each head's value rows (a rotary decoder's first layer gives a
    repeated token the same values). All (B, H, N): ``first``: index of the first row equal to row
    j (j itself if none); ``distinct``: number of distinct rows among ``0..j`` (``u_j``); ``group``:
    the order of row j's first occurrence among the distinct rows (0-based)."""

    first: torch.Tensor
    distinct: torch.Tensor
    group: torch.Tensor


def duplicate_rows(m: torch.Tensor, valid: torch.Tensor) -> DuplicateRows:
    """Bitwise-equal rows of ``m`` (B, H, N, k) among the ``valid`` (B, N) positions.

    Candidates share the value of one random projection and are then compared entry by entry, so a
    pair is never wrongly merged (a pair whose projections differ by rounding is only left apart).
    """
    b, h, n, k = m.shape
    probe = torch.randn(k, generator=torch.Generator().manual_seed(0), dtype=m.dtype).to(m.device)
    key = m @ probe  # (B, H, N)
    earlier = torch.ones(n, n, dtype=torch.bool, device=m.device).tril(-1)  # [j, j']: j' < j
    both = (valid.unsqueeze(-1) & valid.unsqueeze(-2)).unsqueeze(1)
    bi, hi, ji, ei = ((key.unsqueeze(-1) == key.unsqueeze(-2)) & earlier & both).nonzero().unbind(-1)
    same = (m[bi, hi, ji] == m[bi, hi, ei]).all(-1)
    positions = torch.arange(n, device=m.device)
    first = positions.expand(b, h, n).contiguous().flatten()
    flat = (bi[same] * h + hi[same]) * n + ji[same]
    first = first.scatter_reduce(0, flat, ei[same], "amin").view(b, h, n)  # the earliest equal row is the first occurrence
    distinct = ((first == positions) & valid.unsqueeze(1)).cumsum(-1)
    return DuplicateRows(first=first, distinct=distinct, group=distinct.gather(-1, first) - 1)


def _group_average(a: torch.Tensor, group: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Row i of ``a`` (G, N, N) averaged over each group of equal value rows among its keys
    (``group`` (G, N), ``allowed`` (G, N, N)): the projection onto the span of the groups' indicator
    vectors restricted to those keys. Scatter and gather over the keys: O(N^2) per head."""
    keys = allowed.to(a.dtype)
    index = group.unsqueeze(-2).expand_as(a)  # [g, i, j]: the group of key j
    sums = torch.zeros_like(a).scatter_add_(-1, index, a * keys)  # [g, i, c]: attention of row i on group c
    counts = torch.zeros_like(a).scatter_add_(-1, index, keys)  # [g, i, c]: keys of row i in group c
    return (sums / counts.clamp(min=1)).gather(-1, index) * keys


def _independent_representatives(
    m: torch.Tensor, groups: DuplicateRows, lengths: torch.Tensor, tolerance: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """(B, H) whether the first ``min(u, k)`` distinct rows of each head of ``m`` (B, H, N, k) are
    certainly independent under ``tolerance`` (B, H), a bound on the rank tolerance of every prefix
    (``_certified_cholesky`` on their Gram)."""
    b, h, n, k = m.shape
    positions = torch.arange(n, device=m.device)
    slot = groups.distinct - 1  # (B, H, N): rank of row j among the distinct rows
    is_first = (groups.first == positions) & (slot < k) & (positions < lengths.view(-1, 1, 1))
    count = is_first.sum(-1)  # (B, H): min(u, k)
    reps = torch.zeros(b, h, k, k, dtype=m.dtype, device=m.device)
    bi, hi, ji = is_first.nonzero().unbind(-1)
    reps[bi, hi, slot[bi, hi, ji]] = m[bi, hi, ji]
    gram, trace = _padded_row_gram(reps, torch.arange(k, device=m.device) < count.unsqueeze(-1))
    _, full_rank, _ = _certified_cholesky(gram, trace, lengths.view(-1, 1), k, dtype, tolerance.square())
    return full_rank & (count > 0)


PREFIX_BLOCKS = (8, 8, 16, 32)
"""Rows per step of ``_saturated_prefix_rows`` after the first row of rank d_h (small first, as the
prefixes just past it are the worst conditioned), then ``PREFIX_BLOCK`` rows per step."""
PREFIX_BLOCK = 64


def _blocks(first: int, last: int) -> Iterator[tuple[int, int]]:
    """``[i0, i1)`` row blocks covering ``first..last``: ``PREFIX_BLOCKS``, then ``PREFIX_BLOCK`` each."""
    i0, sizes = first, iter(PREFIX_BLOCKS)
    while i0 <= last:
        i1 = min(i0 + next(sizes, PREFIX_BLOCK), last + 1)
        yield i0, i1
        i0 = i1


def _saturated_prefix_rows(
    a: torch.Tensor, vm: torch.Tensor, start: torch.Tensor, rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``A_eff`` for prefix rows ``i > start[g]`` of heads whose ``T_h[:start+1]`` has full column
    rank k, and which of ``rows`` it computed.

    With ``V F = Q R`` (thin QR, R invertible), ``col(T_h[:i+1]) = col(Q[:i+1])`` and
    ``A_eff[i] = z_i Q[:i+1]^T`` with ``z_i = y_i C_i^{-1}``, ``y_i = A[i] Q`` and
    ``C_i = Q[:i+1]^T Q[:i+1]``. Rows go in blocks ``B`` of c rows: with ``P = C^{-1}`` at the block's
    start, ``S = I + B P B^T = L L^T`` and ``B_t`` the block's first t rows, Woodbury gives
    ``C_t^{-1} = P - P B_t^T S_t^{-1} B_t P``, and ``S_t = L_t L_t^T`` is the leading t x t block,
    so for every row of the block at once ``Z = Y P - (H o U)^T X`` with ``X = L^{-1} B P``,
    ``H = L^{-1} (B P Y^T)`` and ``U`` the upper triangle (s <= t). ``C`` is updated and factorised
    again at each block, so rounding does not accumulate; all of it in float64, whatever the dtype of
    ``a``, as the gate below is set for float64. O(n (c + k) k) per head, no per-row
    decomposition. These are the normal equations of ``Q[:i+1]``: a block is computed only where
    ``lambda_min(C) >= 1 / ||L_C^{-1}||_F^2`` exceeds ``CONDITION_LIMIT^-2`` at its start (so
    ``cond(C_t) <= CONDITION_LIMIT^2`` for each of its rows, ``C_t >= C``); the rest of ``rows`` is
    left to the caller. ``a`` (G, N, N), ``vm`` (G, N, k), ``start`` (G,), ``rows`` (G, N); returns
    (G, N, N), zero outside the rows computed, and those rows (G, N).
    """
    q, _ = torch.linalg.qr(vm.double())  # (G, N, k); float64 whatever the compute dtype: the gate below is float64's
    y = a.double() @ q  # row i uses keys <= i only, so this is A[i] Q[:i+1]
    g, n, k = q.shape
    upto = torch.arange(n, device=q.device) <= start.view(-1, 1)  # (G, N)
    head = q * upto.unsqueeze(-1).to(q.dtype)
    c = head.mT @ head  # C at each head's start row: full rank
    later = q * (~upto).unsqueeze(-1).to(q.dtype)  # rows past the start; earlier ones add nothing
    z = torch.zeros_like(y)
    done = torch.zeros_like(rows)
    eye_k = torch.eye(k, dtype=q.dtype, device=q.device)
    for i0, i1 in _blocks(int(start.min()) + 1, int(rows.nonzero()[:, -1].max())):
        block, yb = later[:, i0:i1], y[:, i0:i1]
        factor_c, info = torch.linalg.cholesky_ex(c)
        inverse_c = torch.linalg.solve_triangular(factor_c, eye_k, upper=False)
        ok = (info == 0) & (inverse_c.square().sum((-1, -2)) < CONDITION_LIMIT**2)
        done[:, i0:i1] = ok.unsqueeze(-1)
        p = torch.where(ok.view(-1, 1, 1), inverse_c.mT @ inverse_c, 0.0)  # C^{-1}; a head left to the caller gets S = I
        bp = block @ p  # (G, c, k)
        eye = torch.eye(i1 - i0, dtype=q.dtype, device=q.device)
        factor = torch.linalg.cholesky(eye + bp @ block.mT)
        x = torch.linalg.solve_triangular(factor, bp, upper=False)
        h = torch.linalg.solve_triangular(factor, bp @ yb.mT, upper=False)
        z[:, i0:i1] = yb @ p - h.triu().mT @ x
        c = c + block.mT @ block
    done &= rows
    return (z @ q.mT).tril_().mul_(done.unsqueeze(-1).to(q.dtype)).to(a.dtype), done  # row i on keys j <= i only


@dataclass(frozen=True)
class _RowInputs:
    """What projecting single rows needs: ``a`` (B, H, N, N), ``vm`` (B, H, N, k), ``allowed`` (B, N, N),
    ``context`` (B, N), and the dtype of the decompositions."""

    a: torch.Tensor
    vm: torch.Tensor
    allowed: torch.Tensor
    context: torch.Tensor
    dtype: torch.dtype


def _project_each_row(
    inputs: _RowInputs,
    rows: torch.Tensor,
    decompose: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor | int]],
    effective: torch.Tensor,
    row_rank: torch.Tensor,
) -> None:
    """Row i of head (b, h) for each (b, h, i) in ``rows`` (M, 3), in place: ``A_eff[i] = A[i] U U^T``
    with ``U, rank = decompose(T_i, n_i)``, ``T_i`` the head's ``V F`` with the keys row i may not
    use zeroed and ``n_i`` their number. Batched in chunks of at most ``MAX_CHUNK_ELEMENTS``."""
    n, k = inputs.vm.shape[-2:]
    step = max(1, MAX_CHUNK_ELEMENTS // max(1, n * k))
    for start in range(0, len(rows), step):
        bi, hi, ri = rows[start : start + step].unbind(-1)
        keys = inputs.allowed[bi, ri].to(inputs.dtype)  # (c, N)
        basis, rank = decompose(inputs.vm[bi, hi] * keys.unsqueeze(-1), inputs.context[bi, ri])
        row = inputs.a[bi, hi, ri].unsqueeze(-2)  # (c, 1, N)
        effective[bi, hi, ri] = ((row @ basis) @ basis.mT).squeeze(-2)
        row_rank[bi, hi, ri] = rank


def project_attention_by_row(
    attention: torch.Tensor,
    values: torch.Tensor,
    w_out: torch.Tensor,
    allowed: torch.Tensor,
    compute_dtype: torch.dtype = torch.float64,
) -> Projection:
    """The reference ``project_attention`` is held to: every row gets an SVD of its own restricted
    ``T_h`` (rank from its singular values, ``A_eff[i] = A[i] U U^T``). O(n) decompositions per head."""
    context = allowed.sum(-1)
    masked = attention * allowed.unsqueeze(1).to(attention.dtype)
    a = masked.to(compute_dtype)
    vm = reduced_values(values, w_out, compute_dtype)
    effective = torch.zeros_like(a)
    row_rank = torch.zeros(a.shape[:-1], dtype=torch.long, device=a.device)
    rows = (context > 0).unsqueeze(1).expand(row_rank.shape).nonzero()
    d = w_out.shape[-1]
    inputs = _RowInputs(a, vm, allowed, context, compute_dtype)
    _project_each_row(inputs, rows, lambda m, n_i: _rank_and_basis(m, n_i, d, compute_dtype), effective, row_rank)
    return Projection(effective.to(attention.dtype), row_rank, context, masked)


MAX_BLOCK_ELEMENTS = 1 << 22
"""Most attention entries (sequences x heads x n^2) projected at once: the float64 temporaries of a
block stay near 32 MiB x a few, whatever the length (one head of one sequence at the least)."""


def project_attention(
    attention: torch.Tensor,
    values: torch.Tensor,
    w_out: torch.Tensor,
    allowed: torch.Tensor,
    compute_dtype: torch.dtype = torch.float64,
    shared_context: bool = False,
    factor: torch.Tensor | None = None,
) -> Projection:
    """``A_eff``: row i of ``A_h`` (B, H, N, N) projected onto the column space of ``T_h[K_i]``.

    ``K_i`` = the keys row i may use (``allowed`` (B, N, N)). With ``shared_context`` (encoders:
    every row sees the whole sequence) one decomposition per head serves all rows (``column_space``).
    Otherwise (causal or sliding-window rows) every prefix row (``K_i = 0..i``) is decided from two
    facts per head, with no decomposition per row. Exact duplicate value rows are grouped
    (``duplicate_rows``: a rotary decoder's first layer repeats the values of a repeated token), and
    ``u_i`` counts the distinct rows among ``0..i``. If the first ``min(u, d_h)`` distinct rows are
    certified independent (``_independent_representatives``) under ``||T_h||_F max(n, d) eps``, a bound on every
    prefix's rank tolerance, then every subset of them is too (removing rows cannot lower the smallest
    singular value of a full-row-rank matrix), so:

    - a row with ``u_i <= d_h``: ``col(T_h[:i+1])`` is spanned by the groups' indicator vectors, the
      rank is ``u_i``, and ``A_eff`` averages row i's attention over each group (``_group_average``;
      with no repeats this is ``A_eff = A``: no null space);
    - a row with ``u_i > d_h``: the prefix holds all d_h representatives, so its rank is d_h, and its
      projection comes from the blocked Woodbury recursion of ``_saturated_prefix_rows``, started at
      the first row of rank d_h; where a block's prefix is conditioned worse than ``CONDITION_LIMIT``
      (just past that row, or one huge value row, say), each of its rows gets a Householder QR of
      its own prefix instead.

    Any other row (a head whose rank is not certified, a sliding window that dropped early keys)
    gets an SVD of its own restricted ``T_h``, batched (``project_attention_by_row``'s rule).

    Ranks and bases are decided in ``compute_dtype``; ``A_eff`` is returned in the dtype of
    ``attention`` (an orthonormal basis keeps the product ``A U U^T`` accurate to that dtype).
    ``values`` must be zero on padded rows; ``factor``: ``output_factor(w_out)`` if precomputed.
    """
    b, h, n, _ = attention.shape
    factor = output_factor(w_out) if factor is None else factor
    if b * h * n * n <= MAX_BLOCK_ELEMENTS:
        return _project_block(attention, values, w_out, allowed, compute_dtype, shared_context, factor)
    heads = min(h, max(1, MAX_BLOCK_ELEMENTS // (n * n)))
    sequences = max(1, MAX_BLOCK_ELEMENTS // (heads * n * n))
    context = allowed.sum(-1)
    masked = attention * allowed.unsqueeze(1).to(attention.dtype)
    effective = torch.empty_like(masked)
    row_rank = torch.empty(b, h, n, dtype=torch.long, device=attention.device)
    for b0 in range(0, b, sequences):
        for h0 in range(0, h, heads):
            rows, cols = slice(b0, b0 + sequences), slice(h0, h0 + heads)
            part = _project_block(masked[rows, cols], values[rows, cols], w_out[cols], allowed[rows], compute_dtype,
                                  shared_context, factor[cols])
            effective[rows, cols], row_rank[rows, cols] = part.effective, part.row_rank
    return Projection(effective, row_rank, context, masked)


def _project_block(
    attention: torch.Tensor,
    values: torch.Tensor,
    w_out: torch.Tensor,
    allowed: torch.Tensor,
    compute_dtype: torch.dtype = torch.float64,
    shared_context: bool = False,
    factor: torch.Tensor | None = None,
) -> Projection:
    """``project_attention`` on one block of sequences and heads (its docstring)."""
    context = allowed.sum(-1)
    d = w_out.shape[-1]
    masked = attention * allowed.unsqueeze(1).to(attention.dtype)  # a float mask multiplies faster than a bool one
    if shared_context:
        keys = context.max(-1).values  # (B,): the sequence lengths
        space = column_space(values, w_out, keys, compute_dtype, factor)
        row_rank = space.rank.unsqueeze(-1) * (context > 0).unsqueeze(1)
        null = space.rank < keys.view(-1, 1)  # (B, H): heads whose T_h has a left null space
        if null.all():
            return Projection(project_rows(masked, space.basis), row_rank, context, masked)
        effective = masked.clone()  # rank n: col(T_h) is every direction over the keys, A_eff = A
        effective[null] = project_rows(masked[null], space.basis[null])
        return Projection(effective, row_rank, context, masked)
    a = masked.to(compute_dtype)
    vm = reduced_values(values, w_out, compute_dtype, factor)  # (B, H, N, k)
    b, h, n, k = vm.shape
    positions = torch.arange(n, device=vm.device)
    valid = context > 0  # (B, N)
    lengths = valid.sum(-1)
    frobenius = vm.flatten(-2).norm(dim=-1)  # (B, H): >= sigma_max of every prefix (padding is zero)
    tol_n = rank_tolerance(frobenius, lengths.view(-1, 1), d, compute_dtype)  # >= every prefix's tolerance
    groups = duplicate_rows(vm, valid)
    independent = _independent_representatives(vm, groups, lengths, tol_n, compute_dtype)
    prefix = independent.unsqueeze(-1) & ((context == positions + 1) & valid).unsqueeze(1)  # (B, H, N)
    grouped = prefix & (groups.distinct <= k)
    row_rank = torch.where(grouped, groups.distinct, 0)
    repeats = ((groups.first != positions) & valid.unsqueeze(1)).any(-1, keepdim=True)  # (B, H, 1)
    effective = torch.where((grouped & ~repeats).unsqueeze(-1), a, 0.0)  # every group a single row: A_eff = A
    averaged = grouped & repeats
    if averaged.any():
        heads = averaged.any(-1)
        average = _group_average(a[heads], groups.group[heads], allowed.unsqueeze(1).expand(b, h, n, n)[heads])
        effective[heads] = torch.where(averaged[heads].unsqueeze(-1), average, effective[heads])

    saturated = prefix & (groups.distinct > k)  # (B, H, N): rank k
    tail = torch.zeros_like(saturated)
    if saturated.any():
        heads = saturated.any(-1)
        if heads.all():  # the common case past d_h: no copies of the maps
            start = (groups.distinct < k).sum(-1)
            part, tail = _saturated_prefix_rows(a.flatten(0, 1), vm.flatten(0, 1), start.flatten(), saturated.flatten(0, 1))
            effective += part.view_as(effective)
            tail = tail.view_as(saturated)
        else:
            start = (groups.distinct[heads] < k).sum(-1)  # the first row with k distinct rows
            part, tail[heads] = _saturated_prefix_rows(a[heads], vm[heads], start, saturated[heads])
            effective[heads] += part
        row_rank = torch.where(saturated, k, row_rank)

    inputs = _RowInputs(a, vm, allowed, context, compute_dtype)
    ill_conditioned = saturated & ~tail  # rank k, but a prefix conditioned too badly for the recursion: a QR per row
    _project_each_row(inputs, ill_conditioned.nonzero(), lambda m, _: (torch.linalg.qr(m).Q, k), effective, row_rank)
    hard = ~grouped & ~saturated & valid.unsqueeze(1)  # rank unknown: an SVD per row
    _project_each_row(inputs, hard.nonzero(), lambda m, n_i: _rank_and_basis(m, n_i, d, compute_dtype), effective, row_rank)
    return Projection(effective.to(attention.dtype), row_rank, context, masked)
