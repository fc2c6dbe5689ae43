"""Column space of each head's value-output matrix ``T_h = V_h W_O^h`` and projections onto it.

The left null space of ``T_h`` (dimension ``n - rank(T_h)``) is the freedom in ``A_h`` that leaves
the head's output ``A_h T_h`` unchanged; projecting the rows of ``A_h`` onto the column space of
``T_h`` removes it (DESIGN.md section 1). A row that may only use some keys (causal or sliding
window attention) is projected onto the column space of ``T_h`` restricted to those keys: row i
of a decoder onto ``col(T_h[:i+1])``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MAX_CHUNK_ELEMENTS = 1 << 24
"""Upper bound on the elements of the stacked per-row matrices decomposed at once."""


@dataclass(frozen=True)
class ColumnSpace:
    """Left singular structure of ``T_h`` for a batch of sequences and heads.

    ``basis`` (B, H, N, k): orthonormal columns spanning the column space of ``T_h`` (columns past
    ``rank`` zeroed), so ``basis @ basis^T`` is the orthogonal projector onto it (``U_h U_h^T``).
    ``rank`` (B, H): numerical rank ``r_h``.  ``singular_values`` (B, H, k), descending.
    """

    basis: torch.Tensor
    rank: torch.Tensor
    singular_values: torch.Tensor


@dataclass(frozen=True)
class Projection:
    """Effective attention of a batch of heads, with the rank of each row's ``T_h``.

    ``effective`` (B, H, N, N): ``A_eff``, row i of ``A_h`` projected onto the column space of ``T_h``
    restricted to the keys row i may use; ``row_rank`` (B, H, N): that rank; ``context`` (B, N): how
    many keys row i may use (0 on padded rows), so ``context - row_rank`` is row i's null dimension.
    """

    effective: torch.Tensor
    row_rank: torch.Tensor
    context: torch.Tensor


def rank_tolerance(sigma_max: torch.Tensor, n: torch.Tensor, d: int, dtype: torch.dtype) -> torch.Tensor:
    """Rank threshold ``sigma_max * max(n, d) * eps(dtype)`` (NumPy's ``matrix_rank`` default)."""
    return sigma_max * torch.clamp(n, min=d).to(sigma_max.dtype) * torch.finfo(dtype).eps


def value_output_matrix(values: torch.Tensor, w_out: torch.Tensor) -> torch.Tensor:
    """``T_h = V_h W_O^h``: values (B, H, N, d_h) and output rows (H, d_h, d) -> (B, H, N, d)."""
    return torch.einsum("bhnk,hkd->bhnd", values, w_out.to(values.dtype))


def reduced_values(values: torch.Tensor, w_out: torch.Tensor, compute_dtype: torch.dtype) -> torch.Tensor:
    """``V_h P_h S_h`` (B, H, N, d_h), with ``W_O^h = P_h S_h Z_h^T`` (reduced SVD).

    ``T_h = (V_h P_h S_h) Z_h^T`` and ``Z_h`` has orthonormal columns, so ``V_h P_h S_h`` has the
    singular values and left singular vectors of ``T_h`` without forming the (n x d) matrix.
    """
    p, s, _ = torch.linalg.svd(w_out.to(device=values.device, dtype=compute_dtype), full_matrices=False)
    return values.to(compute_dtype) @ (p * s.unsqueeze(-2)).unsqueeze(0)


def _rank(s: torch.Tensor, n: torch.Tensor, d: int, dtype: torch.dtype) -> torch.Tensor:
    """Numerical rank from descending singular values ``s`` (..., k) of matrices with n rows."""
    return (s > rank_tolerance(s[..., 0], n, d, dtype).unsqueeze(-1)).sum(-1)


def _leading_columns(u: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
    """``u`` (..., N, k) with the columns past ``rank`` (...) zeroed."""
    keep = torch.arange(u.shape[-1], device=u.device) < rank.unsqueeze(-1)
    return u * keep.unsqueeze(-2).to(u.dtype)


def _rank_and_basis(matrices: torch.Tensor, n: torch.Tensor, d: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    u, s, _ = torch.linalg.svd(matrices, full_matrices=False)
    rank = _rank(s, n, d, dtype)
    return _leading_columns(u, rank), rank, s


def column_space(
    values: torch.Tensor,
    w_out: torch.Tensor,
    lengths: torch.Tensor,
    compute_dtype: torch.dtype = torch.float64,
) -> ColumnSpace:
    """Column space of ``T_h`` over whole sequences (every row may use every key).

    The rank comes from the singular values (``compute_dtype``). The basis is then the cheapest
    exact one: Q of a thin QR when ``T_h`` has full column rank, the n unit vectors when it has full
    row rank (n <= d_h: no null space), and the left singular vectors otherwise. ``values`` must be
    zero on padded rows (row index >= ``lengths[b]``); zero rows change neither the singular values
    nor the column space, and the rank tolerance uses each sequence's own ``n = lengths[b]``.
    """
    vm = reduced_values(values, w_out, compute_dtype)  # (B, H, N, k)
    b, h, n_max, k = vm.shape
    n = lengths.to(vm.device).view(-1, 1)
    s = torch.linalg.svdvals(vm)  # (B, H, min(N, k))
    rank = _rank(s, n, w_out.shape[-1], compute_dtype)
    width = s.shape[-1]
    full_column = rank == k
    full_row = (rank == n) & ~full_column
    basis = torch.zeros(b, h, n_max, width, dtype=vm.dtype, device=vm.device)
    if full_column.any():
        q = torch.linalg.qr(vm[full_column]).Q  # (M, N, k)
        basis[full_column] = q
    if full_row.any():
        rows = torch.arange(n_max, device=vm.device)
        unit = (rows.view(-1, 1) == torch.arange(width, device=vm.device)) & (rows.view(-1, 1) < n.view(-1, 1, 1))
        basis[full_row] = unit.unsqueeze(1).expand(b, h, n_max, width)[full_row].to(vm.dtype)
    other = ~full_column & ~full_row
    if other.any():
        u, _, _ = torch.linalg.svd(vm[other], full_matrices=False)
        basis[other] = _leading_columns(u, rank[other])
    return ColumnSpace(basis=basis, rank=rank, singular_values=s)


def project_rows(attention: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``A U U^T``: each row of ``A`` (B, H, N, N) projected onto span(``basis``) (B, H, N, k)."""
    b = basis.to(attention.dtype)
    return (attention @ b) @ b.transpose(-1, -2)


CONDITION_LIMIT = 1e4
"""Heads whose first ``d_h`` value rows are worse conditioned than this give their later rows each
an SVD instead of the running inverse of ``_full_rank_prefix_rows``."""


def _full_rank_prefix_rows(a: torch.Tensor, vm: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``A_eff`` for rows ``i >= k`` whose keys are ``0..i`` and whose ``T_h[:i+1]`` has full column rank k.

    With ``V P S = Q R`` (thin QR of all rows, R invertible), ``col(T_h[:i+1]) = col(Q[:i+1])``, so
    ``A_eff[i] = (A[i] Q) C_i^{-1} Q[:i+1]^T`` with ``C_i = Q[:i+1]^T Q[:i+1]``. ``C_i^{-1}`` follows
    from ``C_{i-1}^{-1}`` by a rank-one (Sherman-Morrison) update, one step per row for all heads.
    Returns (B, H, N, N), zero outside ``rows`` (B, H, N).
    """
    q, _ = torch.linalg.qr(vm)  # (B, H, N, k)
    y = a @ q  # (B, H, N, k): row i uses keys <= i only, so this is A[i] Q[:i+1]
    n, k = q.shape[-2:]
    head = q[:, :, :k]
    eye = torch.eye(k, dtype=q.dtype, device=q.device)
    used = rows.any(-1).unsqueeze(-1).unsqueeze(-1)  # heads with any such row have an invertible C_{k-1}
    inverse = torch.linalg.inv(torch.where(used, head.transpose(-1, -2) @ head, eye))
    z = torch.zeros_like(y)
    for i in range(k, n):
        qi = q[:, :, i].unsqueeze(-1)  # (B, H, k, 1)
        u = inverse @ qi
        inverse = inverse - (u @ u.transpose(-1, -2)) / (1 + qi.transpose(-1, -2) @ u)
        z[:, :, i] = (inverse @ y[:, :, i].unsqueeze(-1)).squeeze(-1)
    causal = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
    return torch.where(rows.unsqueeze(-1) & causal, z @ q.transpose(-1, -2), 0.0)


def project_attention(
    attention: torch.Tensor,
    values: torch.Tensor,
    w_out: torch.Tensor,
    allowed: torch.Tensor,
    compute_dtype: torch.dtype = torch.float64,
    shared_context: bool = False,
) -> Projection:
    """``A_eff``: row i of ``A_h`` (B, H, N, N) projected onto the column space of ``T_h[K_i]``.

    ``K_i`` = the keys row i may use (``allowed`` (B, N, N)). With ``shared_context`` (encoders:
    every row sees the whole sequence) one decomposition per head serves all rows. Otherwise
    (causal or sliding-window rows), with ``p = min(n, d_h)`` and singular values ``s`` of
    ``T_h[:p]``:

    - rows whose keys lie among the first p: if those p rows are independent, so is every subset,
      and such a row keeps its attention (``A_eff = A``, no null space);
    - prefix rows ``i >= p``: ``sigma_min(T_h[:i+1]) >= s_min`` (interlacing) and each row's rank
      tolerance is at most ``||T_h||_F * max(n, d) * eps``, so if ``s_min`` exceeds it every such row
      has full rank ``d_h``, and its projection comes from one QR and a running inverse
      (``_full_rank_prefix_rows``);
    - any other row (a rank-deficient or badly conditioned head, a sliding window that dropped
      early keys) gets an SVD of its own restricted ``T_h``, batched.

    ``values`` must be zero on padded rows.
    """
    a = attention.to(compute_dtype) * allowed.unsqueeze(1)
    context = allowed.sum(-1)
    d = w_out.shape[-1]
    if shared_context:
        space = column_space(values, w_out, context.max(-1).values, compute_dtype)
        row_rank = space.rank.unsqueeze(-1) * (context > 0).unsqueeze(1)
        return Projection(project_rows(a, space.basis), row_rank, context)
    vm = reduced_values(values, w_out, compute_dtype)  # (B, H, N, k)
    b, h, n, k = vm.shape
    positions = torch.arange(n, device=vm.device)
    lengths = (context > 0).sum(-1)
    head = lengths.clamp(max=k).view(-1, 1)  # p per sequence
    in_head = positions < head  # (B, N)
    head_s = torch.linalg.svdvals(vm * in_head.view(b, 1, n, 1))  # (B, H, k)
    head_rank = _rank(head_s, head, d, compute_dtype)
    keys_in_head = ~(allowed & ~in_head.unsqueeze(1)).any(-1)  # (B, N): row i uses only the first p rows
    full_head = head_rank == head  # (B, H)
    easy = full_head.unsqueeze(-1) & keys_in_head.unsqueeze(1)  # (B, H, N)
    effective = torch.where(easy.unsqueeze(-1), a, 0.0)
    row_rank = torch.where(easy, context.unsqueeze(1), 0)

    frobenius = vm.flatten(-2).norm(dim=-1)  # (B, H): >= sigma_max of every prefix (padding is zero)
    tol_n = rank_tolerance(frobenius, lengths.view(-1, 1), d, compute_dtype)
    s_min = head_s.gather(-1, (head - 1).clamp(min=0).expand(b, h).unsqueeze(-1)).squeeze(-1)
    safe_tail = full_head & (head == k) & (s_min > tol_n) & (s_min > frobenius / CONDITION_LIMIT)
    is_prefix = torch.equal(allowed, allowed & torch.ones(n, n, dtype=torch.bool, device=allowed.device).tril())
    prefix_rows = (context == positions + 1) & (context > 0)  # (B, N): keys are exactly 0..i
    tail = safe_tail.unsqueeze(-1) & (prefix_rows & ~keys_in_head).unsqueeze(1) & is_prefix
    if tail.any():
        effective = effective + _full_rank_prefix_rows(a, vm, tail)
        row_rank = torch.where(tail, k, row_rank)

    hard = (~easy & ~tail & (context > 0).unsqueeze(1)).nonzero()  # (M, 3): (b, h, i)
    step = max(1, MAX_CHUNK_ELEMENTS // max(1, n * k))
    for start in range(0, len(hard), step):
        bi, hi, ri = hard[start : start + step].unbind(-1)
        keys = allowed[bi, ri].to(compute_dtype)  # (c, N)
        basis, rank, _ = _rank_and_basis(vm[bi, hi] * keys.unsqueeze(-1), context[bi, ri], d, compute_dtype)
        row = a[bi, hi, ri].unsqueeze(-2)  # (c, 1, N)
        effective[bi, hi, ri] = ((row @ basis) @ basis.transpose(-1, -2)).squeeze(-2)
        row_rank[bi, hi, ri] = rank
    return Projection(effective, row_rank, context)
