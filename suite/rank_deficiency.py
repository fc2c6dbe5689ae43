"""Attention rank deficiency: ``null_dim = n - rank(T_h)`` per sequence, layer and head.

Attention is not identifiable when ``null_dim > 0``: any ``A~`` with rows in the left null space
of ``T_h`` gives ``(A_h + A~) T_h = A_h T_h``. Since ``rank(T_h) <= d_h`` this always happens once
``n > d_h`` (Brunner et al. 2020, section 4.1). ``null_dim`` counts linear-algebra freedom only;
whether an alternative ``A`` is also reachable through ``softmax(Q K^T)`` is a separate question
(Bhardwaj et al., ACL 2021).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RankDeficiency:
    """Per (sequence, head) tensors of shape (B, H): ``n``, ``rank`` = r_h, ``null_dim`` = n - r_h."""

    n: torch.Tensor
    rank: torch.Tensor
    null_dim: torch.Tensor


def rank_deficiency(rank: torch.Tensor, lengths: torch.Tensor) -> RankDeficiency:
    """Null dimension of ``T_h`` for encoder heads: ``n - r_h`` from ranks (B, H) and lengths (B,)."""
    n = lengths.to(rank.device).view(-1, 1).expand_as(rank)
    return RankDeficiency(n=n, rank=rank, null_dim=n - rank)
