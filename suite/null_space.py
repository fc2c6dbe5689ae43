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

    ``basis`` (B, H, N, k): the left singular vectors ``U_h`` of ``T_h``, columns past ``rank`` zeroed,
    so ``basis @ basis^T`` is the orthogonal projector onto the column space of ``T_h``.
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


def _rank_and_basis(matrices: torch.Tensor, n: torch.Tensor, d: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    u, s, _ = torch.linalg.svd(matrices, full_matrices=False)
    rank = (s > rank_tolerance(s[..., 0], n, d, dtype).unsqueeze(-1)).sum(-1)
    keep = torch.arange(s.shape[-1], device=s.device) < rank.unsqueeze(-1)
    return u * keep.unsqueeze(-2).to(u.dtype), rank, s


def column_space(
    values: torch.Tensor,
    w_out: torch.Tensor,
    lengths: torch.Tensor,
    compute_dtype: torch.dtype = torch.float64,
) -> ColumnSpace:
    """Column space of ``T_h`` over whole sequences (every row may use every key).

    ``values`` must be zero on padded rows (row index >= ``lengths[b]``); zero rows change neither
    the singular values nor the non-null singular vectors, and the rank tolerance uses each
    sequence's own ``n = lengths[b]``.
    """
    n = lengths.to(values.device).view(-1, 1)
    basis, rank, s = _rank_and_basis(reduced_values(values, w_out, compute_dtype), n, w_out.shape[-1], compute_dtype)
    return ColumnSpace(basis=basis, rank=rank, singular_values=s)


def project_rows(attention: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``A U U^T``: each row of ``A`` (B, H, N, N) projected onto span(``basis``) (B, H, N, k)."""
    b = basis.to(attention.dtype)
    return (attention @ b) @ b.transpose(-1, -2)


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
    every row sees the whole sequence) one decomposition per head serves all rows; otherwise
    (causal or sliding-window rows) each row's restricted ``T_h`` is decomposed, in chunks of rows,
    as one batched SVD. ``values`` must be zero on padded rows.
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
    effective = torch.zeros_like(a)
    row_rank = torch.zeros(b, h, n, dtype=torch.long, device=a.device)
    step = max(1, MAX_CHUNK_ELEMENTS // max(1, b * h * n * k))
    for start in range(0, n, step):
        rows = slice(start, start + step)
        keys = allowed[:, rows].to(compute_dtype)  # (B, c, N)
        restricted = vm.unsqueeze(2) * keys.unsqueeze(1).unsqueeze(-1)  # (B, H, c, N, k)
        basis, rank, _ = _rank_and_basis(restricted, context[:, rows].unsqueeze(1), d, compute_dtype)
        row = a[:, :, rows].unsqueeze(-2)  # (B, H, c, 1, N)
        effective[:, :, rows] = ((row @ basis) @ basis.transpose(-1, -2)).squeeze(-2)
        row_rank[:, :, rows] = rank
    return Projection(effective, row_rank, context)
