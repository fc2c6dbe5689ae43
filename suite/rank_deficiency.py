"""Attention rank deficiency: ``null_dim = n - rank(T_h)`` per sequence, layer and head.

Attention is not identifiable when ``null_dim > 0``: any ``A~`` with rows in the left null space
of ``T_h`` gives ``(A_h + A~) T_h = A_h T_h``. Since ``rank(T_h) <= d_h`` this always happens once
``n > d_h`` (Brunner et al. 2020, section 4.1). In a decoder row i only uses keys ``j <= i``, so its
null dimension is ``(i + 1) - rank(T_h[:i+1])`` (a generalisation of the paper, which studied an
encoder); the last row's is the sequence's ``n - rank(T_h)``. ``null_dim`` counts linear-algebra
freedom only; whether an alternative ``A`` is also reachable through ``softmax(Q K^T)`` is a
separate question (Bhardwaj et al., ACL 2021).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RankDeficiency:
    """Per (sequence, head) tensors of shape (B, H).

    ``n``, ``rank`` = r_h and ``null_dim`` = n - r_h for the last row's keys (the whole sequence for
    encoder and causal heads, the window for sliding-window heads); ``row_null_fraction``: the mean
    over rows of row i's null dimension divided by its number of keys.
    """

    n: torch.Tensor
    rank: torch.Tensor
    null_dim: torch.Tensor
    row_null_fraction: torch.Tensor


def rank_deficiency(row_rank: torch.Tensor, context: torch.Tensor, lengths: torch.Tensor) -> RankDeficiency:
    """From per-row ranks (B, H, N), keys per row (B, N) and sequence lengths (B,)."""
    last = (lengths.to(row_rank.device) - 1).clamp(min=0)
    b, h, _ = row_rank.shape
    rank = row_rank.gather(2, last.view(-1, 1, 1).expand(b, h, 1)).squeeze(-1)
    n = context.gather(1, last.view(-1, 1)).expand(b, h)
    rows = context > 0
    fraction = (context.unsqueeze(1) - row_rank).double() / context.clamp(min=1).unsqueeze(1)
    row_null_fraction = (fraction * rows.unsqueeze(1)).sum(-1) / rows.sum(-1, keepdim=True).clamp(min=1)
    return RankDeficiency(n=n, rank=rank, null_dim=n - rank, row_null_fraction=row_null_fraction)
