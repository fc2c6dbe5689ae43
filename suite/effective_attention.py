"""How far effective attention ``A_eff = A_h U_h U_h^T`` is from raw attention ``A_h``.

``A_eff`` itself comes from ``suite.null_space.project_attention``. ``A_null = A_h - A_eff`` lies
in the left null space of ``T_h``, so ``A_eff T_h = A_h T_h``: the head's output is unchanged.
Effective rows need not be non-negative nor sum to one (Brunner et al. 2020, section 4.2).
"""

from __future__ import annotations

import torch


def null_share(attention: torch.Tensor, effective: torch.Tensor) -> torch.Tensor:
    """(B, H) ``||A_null||_F / ||A_h||_F`` with ``A_null = A_h - A_eff`` (padding must be zero)."""
    null = (attention - effective).flatten(-2).norm(dim=-1)
    return null / attention.flatten(-2).norm(dim=-1)


def row_pearson(attention: torch.Tensor, effective: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """(B, H) mean over rows of the Pearson correlation of raw and effective row ``i``.

    Each row is correlated over the key positions it may use (``allowed`` (B, N, N)); rows with
    fewer than two positions or zero variance are left out of the mean.
    """
    m = allowed.unsqueeze(1).to(attention.dtype)
    count = m.sum(-1, keepdim=True)
    safe = count.clamp(min=1)
    ca = (attention - (attention * m).sum(-1, keepdim=True) / safe) * m
    ce = (effective - (effective * m).sum(-1, keepdim=True) / safe) * m
    cov = (ca * ce).sum(-1)
    denom = (ca.square().sum(-1) * ce.square().sum(-1)).sqrt()
    r = cov / denom
    usable = (count.squeeze(-1) >= 2) & (denom > 0)
    r = torch.where(usable, r, torch.full_like(r, float("nan")))
    return r.nanmean(-1)


def argmax_change(attention: torch.Tensor, effective: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """(B, H) share of existing rows whose arg-max key position differs between raw and effective."""
    m = allowed.unsqueeze(1)
    neg = torch.finfo(attention.dtype).min
    raw_top = attention.masked_fill(~m, neg).argmax(-1)
    eff_top = effective.masked_fill(~m, neg).argmax(-1)
    rows = m.any(-1)
    changed = (raw_top != eff_top) & rows
    return changed.sum(-1).to(attention.dtype) / rows.sum(-1).to(attention.dtype)


def position_mass(attention: torch.Tensor, positions: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """(B, H) mean over existing rows of the attention on ``positions`` (B, N), e.g. [CLS] or [SEP]."""
    m = allowed.unsqueeze(1)
    mass = (attention * positions.view(positions.shape[0], 1, 1, -1).to(attention.dtype)).sum(-1)
    rows = m.any(-1)
    return (mass * rows).sum(-1) / rows.sum(-1).to(attention.dtype)
