"""Masks over padded batches: which tokens exist and which (query, key) pairs a row may use."""

from __future__ import annotations

import torch


def token_mask(lengths: torch.Tensor, n_max: int) -> torch.Tensor:
    """(B, N) True where position ``i < lengths[b]`` (sequences are left-aligned)."""
    return torch.arange(n_max, device=lengths.device) < lengths.view(-1, 1)


def pair_mask(lengths: torch.Tensor, n_max: int, causal: bool) -> torch.Tensor:
    """(B, N, N) True where query i and key j both exist and, if ``causal``, ``j <= i``."""
    valid = token_mask(lengths, n_max)
    allowed = valid.unsqueeze(-1) & valid.unsqueeze(-2)
    if causal:
        allowed = allowed & torch.ones(n_max, n_max, dtype=torch.bool, device=lengths.device).tril()
    return allowed
