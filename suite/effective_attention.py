"""How far effective attention ``A_eff = A_h U_h U_h^T`` is from raw attention ``A_h``.

``A_eff`` itself comes from ``idsuite.suite.null_space.project_attention``. ``A_null = A_h - A_eff`` lies
in the left null space of ``T_h``, so ``A_eff T_h = A_h T_h``: the head's output is unchanged.
Effective rows need not be non-negative nor sum to one (Brunner et al. 2020, section 4.2).
"""

from __future__ import annotations

import torch


def null_share(attention: torch.Tensor, effective: torch.Tensor) -> torch.Tensor:
    """(B, H) ``||A_null||_F / ||A_h||_F`` with ``A_null = A_h - A_eff`` (padding must be zero)."""
    null = torch.linalg.vector_norm(attention - effective, dim=(-2, -1))
    return null / torch.linalg.vector_norm(attention, dim=(-2, -1))


def row_pearson(attention: torch.Tensor, effective: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """(B, H) mean over rows of the Pearson correlation of raw and effective row ``i``.

    Each row is correlated over the key positions it may use (``allowed`` (B, N, N)); rows with
    fewer than two positions or zero variance are left out of the mean. Both maps must be zero
    outside ``allowed``.
    """
    m = allowed.unsqueeze(1).to(attention.dtype)  # float masks: multiplying is cheaper than where
    count = m.sum(-1, keepdim=True)  # (B, 1, N, 1)
    safe = count.clamp(min=1)
    ca = torch.addcmul(attention, attention.sum(-1, keepdim=True) / safe, m, value=-1)  # a - mean, on allowed keys
    ce = torch.addcmul(effective, effective.sum(-1, keepdim=True) / safe, m, value=-1)
    cov = (ca * ce).sum(-1)
    denom = (ca.square().sum(-1) * ce.square().sum(-1)).sqrt()
    usable = (count.squeeze(-1) >= 2) & (denom > 0)
    return torch.where(usable, cov / denom, float("nan")).nanmean(-1)


def argmax_change(attention: torch.Tensor, effective: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """(B, H) share of existing rows whose arg-max key position differs between raw and effective.

    A row changes when the effective value at raw's arg-max is below the effective row's maximum
    over its allowed keys (tied raw maxima: their mean effective value). Both maps must be zero
    outside ``allowed``; raw's allowed entries are positive, so its maximum needs no mask.
    """
    excluded = torch.where(allowed, 0.0, -torch.inf).unsqueeze(1).to(effective.dtype)  # (B, 1, N, N)
    raw_top = (attention == attention.amax(-1, keepdim=True)).to(effective.dtype)
    eff_at_raw_top = (effective * raw_top).sum(-1) / raw_top.sum(-1)
    rows = allowed.any(-1).unsqueeze(1)
    changed = (eff_at_raw_top < (effective + excluded).amax(-1)) & rows
    return changed.sum(-1).to(attention.dtype) / rows.sum(-1).to(attention.dtype)


def position_mass(attention: torch.Tensor, positions: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """(B, H, P) mean over existing rows of the attention on each of P sets of ``positions`` (B, N, P),
    e.g. [CLS], [SEP] and punctuation. ``attention`` must be zero on rows outside ``allowed``."""
    rows = allowed.any(-1)  # (B, N)
    column_mass = attention.sum(-2)  # (B, H, N): summed over the existing rows
    return (column_mass @ positions.to(attention.dtype)) / rows.sum(-1).view(-1, 1, 1).to(attention.dtype)
