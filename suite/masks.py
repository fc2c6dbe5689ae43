"""Masks over padded batches: which tokens exist and which (query, key) pairs a row may use."""

from __future__ import annotations

import torch


def token_mask(lengths: torch.Tensor, n_max: int) -> torch.Tensor:
    """(B, N) True where position ``i < lengths[b]`` (sequences are left-aligned)."""
    return torch.arange(n_max, device=lengths.device) < lengths.view(-1, 1)


def pair_mask(lengths: torch.Tensor, n_max: int, causal: bool, window: int | None = None) -> torch.Tensor:
    """(B, N, N) True where query i and key j both exist and, if ``causal``, ``j <= i``.

    ``window``: sliding-window attention, row i also needs ``i - j < window``.
    """
    valid = token_mask(lengths, n_max)
    allowed = valid.unsqueeze(-1) & valid.unsqueeze(-2)
    offset = torch.arange(n_max, device=lengths.device).view(-1, 1) - torch.arange(n_max, device=lengths.device)
    if causal:
        allowed = allowed & (offset >= 0)
    if window is not None:
        allowed = allowed & (offset.abs() < window)
    return allowed
