"""Column space of each head's value-output matrix ``T_h = V_h W_O^h`` and projections onto it.

The left null space of ``T_h`` (dimension ``n - rank(T_h)``) is the freedom in ``A_h`` that leaves
the head's output ``A_h T_h`` unchanged; projecting the rows of ``A_h`` onto the column space of
``T_h`` removes it (DESIGN.md section 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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


def rank_tolerance(sigma_max: torch.Tensor, n: torch.Tensor, d: int, dtype: torch.dtype) -> torch.Tensor:
    """Rank threshold ``sigma_max * max(n, d) * eps(dtype)`` (NumPy's ``matrix_rank`` default)."""
    return sigma_max * torch.clamp(n, min=d).to(sigma_max.dtype) * torch.finfo(dtype).eps


def value_output_matrix(values: torch.Tensor, w_out: torch.Tensor) -> torch.Tensor:
    """``T_h = V_h W_O^h``: values (B, H, N, d_h) and output rows (H, d_h, d) -> (B, H, N, d)."""
    return torch.einsum("bhnk,hkd->bhnd", values, w_out.to(values.dtype))


def column_space(
    values: torch.Tensor,
    w_out: torch.Tensor,
    lengths: torch.Tensor,
    compute_dtype: torch.dtype = torch.float64,
) -> ColumnSpace:
    """SVD of ``T_h = V_h W_O^h`` without forming the (n x d) matrix.

    With ``V_h = Q R`` (reduced QR, Q orthonormal), ``T_h = Q (R W_O^h)`` and the SVD of the small
    ``R W_O^h = P S Z^T`` gives ``T_h = (Q P) S Z^T``: the same singular values, ``U_h = Q P``.
    ``values`` must be zero on padded rows (row index >= ``lengths[b]``); zero rows change neither
    the singular values nor the non-null singular vectors, and the rank tolerance uses each
    sequence's own ``n = lengths[b]``.
    """
    v = values.to(compute_dtype)
    q, r = torch.linalg.qr(v)  # (B,H,N,k), (B,H,k,d_h), k = min(N, d_h)
    small = r @ w_out.to(device=v.device, dtype=compute_dtype).unsqueeze(0)  # (B,H,k,d)
    p, s, _ = torch.linalg.svd(small, full_matrices=False)  # (B,H,k,k'), (B,H,k')
    n = lengths.to(device=s.device).view(-1, 1)
    tol = rank_tolerance(s[..., 0], n, w_out.shape[-1], compute_dtype)
    rank = (s > tol.unsqueeze(-1)).sum(-1)
    keep = torch.arange(s.shape[-1], device=s.device) < rank.unsqueeze(-1)
    basis = (q @ p) * keep.unsqueeze(-2).to(compute_dtype)
    return ColumnSpace(basis=basis, rank=rank, singular_values=s)


def project_rows(attention: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``A U U^T``: each row of ``A`` (B, H, N, N) projected onto span(``basis``) (B, H, N, k)."""
    b = basis.to(attention.dtype)
    return (attention @ b) @ b.transpose(-1, -2)
