"""Token identifiability: can the input token be recovered from its hidden state at layer l?

A mapping ``g_l`` from hidden states ``e_i^l`` to input embeddings ``x_i = e_i^0`` is fitted on
training sentences; on held-out sentences token ``i`` is identified when the nearest input
embedding of its own sequence to ``g_l(e_i^l)`` is ``x_i`` (or has the same token id, for repeated
tokens). Brunner et al. 2020, section 5. Mappings: ``naive`` (identity), ``linear`` (affine least
squares, one fit serves both distances), ``mlp`` (one hidden ReLU layer, trained with the loss of
the distance it is scored with: ``1 - cos`` for cosine, mean squared error for L2, as the paper
trains one ``g`` per distance; every layer's and distance's MLP train together, ``fit_mlps``, until
their held-out loss stops improving).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class MlpFits:
    """How each of G batched MLP maps was fitted (all (G,) tensors): ``train_loss`` and
    ``heldout_loss`` at the kept (best held-out) weights, ``steps`` taken, and ``converged``: its
    held-out loss stopped improving (by more than the tolerance, for ``patience`` checks) before
    the step cap."""

    train_loss: torch.Tensor
    heldout_loss: torch.Tensor
    steps: torch.Tensor
    converged: torch.Tensor


def _loss(out: torch.Tensor, target: torch.Tensor, unit_target: torch.Tensor, cosine: torch.Tensor) -> torch.Tensor:
    """(G,) mean loss per map: ``1 - cos(g(e), x)`` where ``cosine`` (G,) is set, else ``||g(e) - x||^2``;
    ``out`` (G, T, d), ``target`` and its unit vectors ``unit_target`` (T, d) shared by all maps."""
    loss = out.new_empty(out.shape[0])
    if cosine.any():
        o = out[cosine]
        loss[cosine] = 1 - ((o * unit_target).sum(-1) / torch.linalg.vector_norm(o, dim=-1).clamp(min=1e-8)).mean(-1)
    if (~cosine).any():
        loss[~cosine] = (out[~cosine] - target).square().sum(-1).mean(-1)
    return loss


RIDGE = 1e-3
"""Ridge of the least-squares start of the output layer, relative to the features' mean square."""


def _least_squares_output(features: torch.Tensor, target: torch.Tensor, unit_target: torch.Tensor,
                          cosine: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The output layer ``(W2, b2)`` minimising ``||[H 1] [W2; b2] - Y||^2`` (ridge) for the hidden
    features ``H`` (G, T, h) of the initial first layer: the exact optimum of the L2 loss given them,
    and for cosine maps that of the unit-norm targets. Training then starts from there."""
    y = torch.where(cosine.view(-1, 1, 1), unit_target, target)
    h = torch.cat([features, features.new_ones(*features.shape[:2], 1)], dim=-1).double()
    gram = h.mT @ h
    ridge = RIDGE * gram.diagonal(dim1=-2, dim2=-1).mean(-1).view(-1, 1, 1) * torch.eye(h.shape[-1], dtype=h.dtype)
    coef = torch.linalg.solve(gram + ridge, h.mT @ y.double()).float()
    return coef[:, :-1].contiguous(), coef[:, -1:].contiguous()


def _two_layers(x: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    w1, b1, w2, b2 = weights
    return torch.baddbmm(b2, torch.relu(torch.baddbmm(b1, x, w1)), w2)


def _shrink(params: list[torch.Tensor], optimizer: torch.optim.Adam, keep: torch.Tensor, lr: float
            ) -> tuple[list[torch.Tensor], torch.optim.Adam]:
    """The parameters of the maps in ``keep`` as new leaves, with an Adam that continues their state."""
    smaller = [p.detach()[keep].clone().requires_grad_() for p in params]
    state = [optimizer.state[p] for p in params]
    optimizer = torch.optim.Adam(smaller, lr=lr)
    for new, old in zip(smaller, state, strict=True):
        if old:
            optimizer.state[new] = {"step": old["step"], "exp_avg": old["exp_avg"][keep].clone(),
                                    "exp_avg_sq": old["exp_avg_sq"][keep].clone()}
    return smaller, optimizer


def fit_mlps(
    hidden: torch.Tensor,
    inputs: torch.Tensor,
    distances: list[Distance],
    heldout: torch.Tensor,
    seed: int,
    width: int,
    lr: float = 3e-3,
    max_steps: int = 2000,
    check_every: int = 10,
    patience: int = 5,
    tolerance: float = 1e-3,
    progress: Callable[[int, int], None] | None = None,
    precision: Literal["float32", "bfloat16"] = "float32",
) -> tuple[list[Mapping], MlpFits]:
    """G one-hidden-layer ReLU MLPs ``g_k: e -> x`` trained together as one batched model (batched
    matrix products, one full-batch Adam), map k on ``hidden[k]`` (T, d) with the loss of
    ``distances[k]`` (``1 - cos`` or squared L2); inputs standardised with each map's training
    statistics, the output layer started at its least-squares optimum for the random first layer.

    Tokens where ``heldout`` (T,) is set are not trained on: every ``check_every`` steps their loss
    decides. A map whose held-out loss has not improved by ``tolerance`` times its loss at the first
    check, for ``patience`` checks, has converged and is no longer computed; training stops when all have, or at
    ``max_steps``; each map keeps its weights of lowest held-out loss. Seeded; the global RNG state
    is left as it was. ``progress(step, converged)`` is called at each check. ``precision``:
    ``bfloat16`` runs the training's matrix products in bfloat16 (weights, losses and the kept maps
    stay float32; 4-5x faster on CPUs with bfloat16 instructions)."""
    g, _, d_in = hidden.shape
    d_out = inputs.shape[-1]
    train, held = ~heldout, heldout
    z = hidden.float()
    mean, std = z[:, train].mean(1, keepdim=True), z[:, train].std(1, keepdim=True).clamp(min=1e-6)
    z = (z - mean) / std
    target = inputs.float()
    unit = torch.nn.functional.normalize(target, dim=-1)
    cosine = torch.tensor([d == "cosine" for d in distances], device=z.device)
    z_train, z_held = z[:, train], z[:, held]
    t_train, t_held, u_train, u_held = target[train], target[held], unit[train], unit[held]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        bound = d_in**-0.5  # nn.Linear's initialisation of the first layer
        w1 = ((torch.rand(g, d_in, width) * 2 - 1) * bound).to(z.device)
        b1 = ((torch.rand(g, 1, width) * 2 - 1) * bound).to(z.device)
    w2, b2 = _least_squares_output(torch.relu(torch.baddbmm(b1, z_train, w1)), t_train, u_train, cosine)
    params = [p.requires_grad_() for p in (w1, b1, w2, b2)]
    optimizer = torch.optim.Adam(params, lr=lr)
    best = torch.full((g,), float("inf"), device=z.device)
    kept = [p.detach().clone() for p in params]
    stale = torch.zeros(g, dtype=torch.long, device=z.device)
    steps = torch.zeros(g, dtype=torch.long, device=z.device)
    done = torch.zeros(g, dtype=torch.bool, device=z.device)
    ids = torch.arange(g, device=z.device)  # the maps still training, which ``params`` hold
    x_train, x_held = z_train, z_held
    first: torch.Tensor | None = None
    autocast = torch.autocast(z.device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")
    with torch.enable_grad():
        for step in range(1, max_steps + 1):
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                out = _two_layers(x_train, params)
            _loss(out.float(), t_train, u_train, cosine[ids]).sum().backward()
            optimizer.step()
            steps[ids] += 1
            if step % check_every and step != max_steps:
                continue
            with torch.no_grad(), autocast:
                held_loss = _loss(_two_layers(x_held, params).float(), t_held, u_held, cosine[ids])
            if first is None:
                first = held_loss.detach().clone()  # the scale "improving" is measured against (all maps)
            better = held_loss < best[ids] - tolerance * first[ids]
            for p, k in zip(params, kept, strict=True):
                k[ids[better]] = p.detach()[better]
            best[ids] = torch.where(better, held_loss.detach(), best[ids])
            stale[ids] = torch.where(better, 0, stale[ids] + 1)
            done[ids] = stale[ids] >= patience
            if progress is not None:
                progress(step, int(done.sum()))
            keep = ~done[ids]
            if not keep.any():
                break
            if not keep.all():  # drop the converged maps from the batch (the optimizer's state with them)
                params, optimizer = _shrink(params, optimizer, keep, lr)
                ids, x_train, x_held = ids[keep], x_train[keep], x_held[keep]
    with torch.no_grad():
        train_loss = _loss(_two_layers(z_train, kept), t_train, u_train, cosine)
    fits = MlpFits(train_loss=train_loss, heldout_loss=best, steps=steps, converged=done)

    def mapping(k: int) -> Mapping:
        weights = [p[k : k + 1] for p in kept]
        return lambda e: _two_layers(((e.float() - mean[k]) / std[k]).reshape(1, -1, d_in), weights).reshape(
            *e.shape[:-1], d_out)

    return [mapping(k) for k in range(g)], fits


def identified_per_sequence(
    mapping: Mapping,
    hidden: torch.Tensor,
    inputs: torch.Tensor,
    token_ids: torch.Tensor,
    valid: torch.Tensor,
    distance: Distance,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(S,) identified tokens and (S,) valid tokens of each held-out sequence; ``hidden``/``inputs``
    are (S, N, d) padded. The identifiability rate is their ratio of sums."""
    hits = identified(mapping(hidden), inputs, token_ids, valid, distance)
    return hits.sum(-1), valid.sum(-1)
