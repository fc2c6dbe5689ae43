"""Column space of each head's value-output matrix ``T_h = V_h W_O^h`` and projections onto it.

The left null space of ``T_h`` (dimension ``n - rank(T_h)``) is the freedom in ``A_h`` that leaves
the head's output ``A_h T_h`` unchanged; projecting the rows of ``A_h`` onto the column space of
``T_h`` removes it (DESIGN.md section 1). A row that may only use some keys (causal or sliding
window attention) is projected onto the column space of ``T_h`` restricted to those keys: row i
of a decoder onto ``col(T_h[:i+1])``.
"""

from __future__ import annotations

from collections.abc import Callable
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
the cheap bases of Cholesky QR and ``_full_rank_prefix_rows``: an encoder head gets an SVD, a causal
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
    basis = torch.zeros(b, h, n_max, width, dtype=v.dtype, device=v.device)
    rank = torch.zeros(b, h, dtype=torch.long, device=v.device)
    certified = torch.zeros(b, h, dtype=torch.bool, device=v.device)
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


def _full_rank_prefix_rows(a: torch.Tensor, vm: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``A_eff`` for rows ``i >= k`` whose keys are ``0..i`` and whose ``T_h[:i+1]`` has full column rank k.

    With ``V P S = Q R`` (thin QR of all rows, R invertible), ``col(T_h[:i+1]) = col(Q[:i+1])``, so
    ``A_eff[i] = (A[i] Q) C_i^{-1} Q[:i+1]^T`` with ``C_i = Q[:i+1]^T Q[:i+1]``. ``C_i^{-1}`` follows
    from ``C_{i-1}^{-1}`` by a rank-one (Sherman-Morrison) update, one step per row for all heads.
    ``a`` (..., N, N), ``vm`` (..., N, k), ``rows`` (..., N) for any leading (head) dimensions;
    returns (..., N, N), zero outside ``rows``.
    """
    q, _ = torch.linalg.qr(vm)  # (..., N, k)
    y = a @ q  # (..., N, k): row i uses keys <= i only, so this is A[i] Q[:i+1]
    n, k = q.shape[-2:]
    head = q[..., :k, :]
    eye = torch.eye(k, dtype=q.dtype, device=q.device)
    used = rows.any(-1).unsqueeze(-1).unsqueeze(-1)  # heads with any such row have an invertible C_{k-1}
    inverse = torch.linalg.inv(torch.where(used, head.mT @ head, eye))
    z = torch.zeros_like(y)
    last = int(rows.nonzero()[:, -1].max()) if rows.any() else k - 1  # no output past the last such row
    for i in range(k, last + 1):
        qi = q[..., i, :].unsqueeze(-1)  # (..., k, 1)
        u = inverse @ qi
        inverse = inverse - (u @ u.mT) / (1 + qi.mT @ u)
        z[..., i, :] = (inverse @ y[..., i, :].unsqueeze(-1)).squeeze(-1)
    causal = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
    return torch.where(rows.unsqueeze(-1) & causal, z @ q.mT, 0.0)


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
    first = positions.expand(b, h, n).contiguous()
    first.index_put_((bi[same], hi[same], ji[same]), ei[same])  # any earlier equal row ...
    first = first.gather(-1, first)  # ... then its own first occurrence (equality is transitive)
    first = first.gather(-1, first)
    distinct = ((first == positions) & valid.unsqueeze(1)).cumsum(-1)
    return DuplicateRows(first=first, distinct=distinct, group=distinct.gather(-1, first) - 1)


def _group_average(a: torch.Tensor, group: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Row i of ``a`` (..., N, N) averaged over each group of equal value rows among its keys
    (``group`` (..., N), ``allowed`` (..., N, N)): the projection onto the span of the groups'
    indicator vectors restricted to those keys."""
    n = a.shape[-1]
    member = (group.unsqueeze(-1) == torch.arange(n, device=a.device)).to(a.dtype)  # (..., N_j, N_g)
    keys = allowed.to(a.dtype)
    sums = a @ member  # attention of row i per group
    counts = keys @ member  # keys of row i per group
    return ((sums / counts.clamp(min=1)) @ member.mT) * keys


def _independent_representatives(
    m: torch.Tensor, groups: DuplicateRows, lengths: torch.Tensor, tolerance: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """(B, H) whether the first ``min(u, k)`` distinct rows of each head are certainly independent
    under ``tolerance`` (B, H), a bound on the rank tolerance of every prefix."""
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
    Otherwise (causal or sliding-window rows), with ``p = min(n, d_h)``, exact duplicate value rows
    grouped (``duplicate_rows``) and the first ``min(u, d_h)`` distinct rows certified independent
    (``_independent_representatives``):

    - rows whose keys lie among the first p, all distinct: every subset of independent rows is
      independent, so such a row keeps its attention (``A_eff = A``, no null space);
    - prefix rows with ``u_i <= d_h`` distinct rows (a rotary decoder's first layer repeats the
      values of a repeated token): ``col(T_h[:i+1])`` is spanned by the groups' indicator vectors, so
      ``A_eff`` averages row i's attention over each group and the rank is ``u_i``;
    - prefix rows ``i >= p`` of a head whose first ``d_h`` rows have smallest singular value ``s_min``:
      ``sigma_min(T_h[:i+1]) >= s_min`` (interlacing) and each row's rank tolerance is at most
      ``||T_h||_F * max(n, d) * eps``, so if ``s_min`` exceeds it every such row has full rank ``d_h``,
      and its projection comes from one QR and a running inverse (``_full_rank_prefix_rows``), or,
      where ``s_min < ||T_h||_F / CONDITION_LIMIT`` (one huge value row, say, which the running
      inverse would not resolve accurately), from a Householder QR of its own ``T_h[:i+1]``;
    - any other row (a head whose rank is not certified, a sliding window that dropped early keys)
      gets an SVD of its own restricted ``T_h``, batched.

    Ranks and bases are decided in ``compute_dtype``; ``A_eff`` is returned in the dtype of
    ``attention`` (an orthonormal basis keeps the product ``A U U^T`` accurate to that dtype).
    ``values`` must be zero on padded rows; ``factor``: ``output_factor(w_out)`` if precomputed.
    """
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
    independent = _independent_representatives(vm, groups, lengths, tol_n, compute_dtype)  # (B, H)
    head = lengths.clamp(max=k).view(-1, 1)  # p per sequence
    in_head = positions < head  # (B, N)
    keys_in_head = ~(allowed & ~in_head.unsqueeze(1)).any(-1)  # (B, N): row i uses only the first p rows
    full_head = independent & (groups.distinct.gather(-1, (head - 1).clamp(min=0).expand(b, h).unsqueeze(-1)).squeeze(-1) == head)
    easy = full_head.unsqueeze(-1) & keys_in_head.unsqueeze(1)  # (B, H, N): A_eff = A
    effective = torch.where(easy.unsqueeze(-1), a, 0.0)
    row_rank = torch.where(easy, context.unsqueeze(1), 0)

    prefix_rows = (context == positions + 1) & valid  # (B, N): keys are exactly 0..i
    grouped = independent.unsqueeze(-1) & prefix_rows.unsqueeze(1) & (groups.distinct <= k) & ~easy
    if grouped.any():  # repeated value rows among at most k distinct, independent ones: average each group
        heads = grouped.any(-1)
        average = _group_average(a[heads], groups.group[heads], allowed.unsqueeze(1).expand(b, h, n, n)[heads])
        effective[heads] = torch.where(grouped[heads].unsqueeze(-1), average, effective[heads])
        row_rank = torch.where(grouped, groups.distinct, row_rank)

    is_prefix = torch.equal(allowed, allowed & torch.ones(n, n, dtype=torch.bool, device=allowed.device).tril())
    candidates = full_head & (head == k) & (lengths > k).view(-1, 1) & is_prefix
    full_rank = torch.zeros_like(candidates)  # (B, H): every row past d_h has rank k
    well_conditioned = torch.zeros_like(candidates)  # ... and the running inverse stays accurate
    if candidates.any():
        s_min = torch.linalg.svdvals(vm[candidates][:, :k])[:, -1]
        full_rank[candidates] = s_min > tol_n[candidates]
        well_conditioned[candidates] = full_rank[candidates] & (s_min > frobenius[candidates] / CONDITION_LIMIT)
    past_head = (prefix_rows & ~keys_in_head).unsqueeze(1) & ~grouped  # (B, H, N); grouped rows are done
    tail = well_conditioned.unsqueeze(-1) & past_head
    if tail.any():
        heads = tail.any(-1)  # (B, H): only these heads pay for the QR and the running inverse
        effective[heads] += _full_rank_prefix_rows(a[heads], vm[heads], tail[heads])
        row_rank = torch.where(tail, k, row_rank)

    inputs = _RowInputs(a, vm, allowed, context, compute_dtype)
    ill_conditioned = (full_rank & ~well_conditioned).unsqueeze(-1) & past_head  # rank k: a QR per row
    _project_each_row(inputs, ill_conditioned.nonzero(), lambda m, _: (torch.linalg.qr(m).Q, k), effective, row_rank)
    hard = ~easy & ~grouped & ~tail & ~ill_conditioned & valid.unsqueeze(1)  # rank unknown: an SVD per row
    _project_each_row(inputs, hard.nonzero(), lambda m, n_i: _rank_and_basis(m, n_i, d, compute_dtype), effective, row_rank)
    return Projection(effective.to(attention.dtype), row_rank, context, masked)
