"""Token identifiability: can the input token be recovered from its hidden state at layer l?

A mapping ``g_l`` from hidden states ``e_i^l`` to input embeddings ``x_i = e_i^0`` is fitted on
training sentences; on held-out sentences token ``i`` is identified when the nearest input
embedding of its own sequence to ``g_l(e_i^l)`` is ``x_i`` (or has the same token id, for repeated
tokens). Brunner et al. 2020, section 5. Mappings: ``naive`` (identity), ``linear`` (affine least
squares, one fit serves both distances), ``mlp`` (one hidden ReLU layer, trained with the loss of
the distance it is scored with: ``1 - cos`` for cosine, mean squared error for L2, as the paper
trains one ``g`` per distance).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

Mapping = Callable[[torch.Tensor], torch.Tensor]
Distance = Literal["cosine", "l2"]
MappingKind = Literal["naive", "linear", "mlp"]


def pairwise_distance(pred: torch.Tensor, targets: torch.Tensor, distance: Distance) -> torch.Tensor:
    """(S, N, N) distance from ``pred[s, i]`` to ``targets[s, j]`` for (S, N, d) inputs."""
    if distance == "cosine":
        p = torch.nn.functional.normalize(pred, dim=-1)
        t = torch.nn.functional.normalize(targets, dim=-1)
        return 1 - p @ t.transpose(-1, -2)
    if distance == "l2":
        return torch.cdist(pred, targets)
    raise ValueError(f"unknown distance {distance!r} (expected 'cosine' or 'l2')")


def identified(
    pred: torch.Tensor,
    inputs: torch.Tensor,
    token_ids: torch.Tensor,
    valid: torch.Tensor,
    distance: Distance,
) -> torch.Tensor:
    """(S, N) True where the nearest valid input embedding of the same sequence is the token's own.

    ``pred`` = ``g(e^l)`` and ``inputs`` = ``x`` are (S, N, d); ``valid`` (S, N) marks real tokens.
    A nearest neighbour at another position with the same token id also counts as identified.
    """
    dist = pairwise_distance(pred.float(), inputs.float(), distance)
    dist = dist.masked_fill(~valid.unsqueeze(1), float("inf"))
    nearest = dist.argmin(-1)
    own = torch.arange(pred.shape[1], device=pred.device).expand_as(nearest)
    same_id = token_ids.gather(1, nearest) == token_ids
    return ((nearest == own) | same_id) & valid


def fit_naive(hidden: torch.Tensor, inputs: torch.Tensor) -> Mapping:
    """``g(e) = e``."""
    return lambda e: e


def fit_linear(hidden: torch.Tensor, inputs: torch.Tensor) -> Mapping:
    """Affine least squares ``g(e) = e W + b`` minimising ``||[E 1] [W; b] - X||_F`` (float64)."""
    h = torch.cat([hidden.double(), hidden.new_ones(hidden.shape[0], 1, dtype=torch.float64)], dim=1)
    coef = torch.linalg.lstsq(h, inputs.double(), driver="gelsd" if h.device.type == "cpu" else None).solution
    w, b = coef[:-1], coef[-1]
    return lambda e: (e.double() @ w + b).to(e.dtype)


def fit_mlp(
    hidden: torch.Tensor,
    inputs: torch.Tensor,
    distance: Distance,
    seed: int,
    hidden_size: int | None = None,
    steps: int = 300,
    lr: float = 1e-3,
) -> Mapping:
    """One-hidden-layer ReLU MLP on standardised ``e`` (train statistics), full-batch Adam.

    Loss: ``mean(1 - cos(g(e), x))`` for cosine, ``mean ||g(e) - x||^2`` for L2. Seeded and
    deterministic for a given ``seed``; the global RNG state is left as it was.
    """
    d_in, d_out = hidden.shape[1], inputs.shape[1]
    width = hidden_size or d_in
    mean, std = hidden.mean(0), hidden.std(0).clamp(min=1e-6)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(d_in, width), torch.nn.ReLU(), torch.nn.Linear(width, d_out))
    net = net.to(hidden.device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    z, target = (hidden - mean) / std, inputs.float()
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            out = net(z)
            if distance == "cosine":
                loss = (1 - torch.nn.functional.cosine_similarity(out, target, dim=-1)).mean()
            else:
                loss = (out - target).square().sum(-1).mean()
            loss.backward()
            opt.step()
    net.requires_grad_(False)
    return lambda e: net((e.float() - mean) / std)


def fit_mapping(
    kind: MappingKind,
    hidden: torch.Tensor,
    inputs: torch.Tensor,
    distance: Distance,
    seed: int,
    mlp_hidden_size: int | None = None,
    mlp_steps: int = 300,
    mlp_lr: float = 1e-3,
) -> Mapping:
    """Fit ``g_l`` of the given kind on flattened training tokens ``hidden`` (T, d) -> ``inputs`` (T, d)."""
    if kind == "naive":
        return fit_naive(hidden, inputs)
    if kind == "linear":
        return fit_linear(hidden, inputs)
    if kind == "mlp":
        return fit_mlp(hidden, inputs, distance, seed, mlp_hidden_size, mlp_steps, mlp_lr)
    raise ValueError(f"unknown mapping {kind!r} (expected 'naive', 'linear' or 'mlp')")


def identifiability_rate(
    mapping: Mapping,
    hidden: torch.Tensor,
    inputs: torch.Tensor,
    token_ids: torch.Tensor,
    valid: torch.Tensor,
    distance: Distance,
) -> float:
    """Share of valid held-out tokens identified; ``hidden``/``inputs`` are (S, N, d) padded."""
    pred = mapping(hidden)
    hits = identified(pred, inputs, token_ids, valid, distance)
    return hits.sum().item() / valid.sum().item()
