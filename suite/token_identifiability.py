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


def nearest_order(pred: torch.Tensor, targets: torch.Tensor, distance: Distance) -> torch.Tensor:
    """(S, N, N) scores whose order along the last axis is that of the distance from ``pred[s, i]``
    to ``targets[s, j]`` for (S, N, d) inputs: ``-cos`` for cosine, ``||t_j||^2 - 2 p_i . t_j`` for l2
    (the squared distance less ``||p_i||^2``, a constant of each row), one batched product each."""
    if distance == "cosine":
        p = torch.nn.functional.normalize(pred, dim=-1)
        t = torch.nn.functional.normalize(targets, dim=-1)
        return -(p @ t.transpose(-1, -2))
    if distance == "l2":
        return torch.baddbmm(targets.square().sum(-1).unsqueeze(1), pred, targets.transpose(-1, -2), alpha=-2)
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
    dist = nearest_order(pred.float(), inputs.float(), distance)
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
    ``heldout_loss`` at the kept (best held-out) weights, ``epochs`` taken, and ``converged``: its
    held-out loss stopped improving (by more than the tolerance, for ``patience`` epochs) within the
    epoch cap."""

    train_loss: torch.Tensor
    heldout_loss: torch.Tensor
    epochs: torch.Tensor
    converged: torch.Tensor


def _loss(out: torch.Tensor, target: torch.Tensor, unit_target: torch.Tensor, cosine: int) -> torch.Tensor:
    """(G,) mean loss per map: ``1 - cos(g(e), x)`` for the first ``cosine`` maps, ``||g(e) - x||^2``
    for the rest; ``out`` (G, T, d), ``target`` and its unit vectors ``unit_target`` (T, d) shared by
    all maps. Slices, not masks: no copies of ``out`` and no scatter in the backward pass."""
    o = out[:cosine]
    cos = (o * unit_target).sum(-1) / torch.linalg.vector_norm(o, dim=-1).clamp(min=1e-8)
    return torch.cat([1 - cos.mean(-1), (out[cosine:] - target).square().sum(-1).mean(-1)])


RIDGE = 1e-3
"""Ridge of the least-squares start of the output layer, relative to the mean diagonal of the
features' Gram matrix ``[H 1]^T [H 1]``."""


def _least_squares_output(features: torch.Tensor, target: torch.Tensor, unit_target: torch.Tensor,
                          cosine: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The output layer ``(W2, b2)`` minimising ``||[H 1] [W2; b2] - Y||^2 + ridge ||[W2; b2]||^2`` for
    the hidden features ``H`` (G, T, h) of the initial first layer: the optimum of the L2 loss given
    them, and for cosine maps that of the unit-norm targets. Training starts from there. The Gram
    matrix is summed in the features' dtype and factored by Cholesky in float64 (it is symmetric
    positive definite; batched LU solves fail in some MKL builds once ``torch.set_num_threads`` is set)."""
    y = torch.where(cosine.view(-1, 1, 1), unit_target, target)
    h = torch.cat([features, features.new_ones(*features.shape[:2], 1)], dim=-1)
    gram = (h.mT @ h).double()
    diagonal = gram.diagonal(dim1=-2, dim2=-1)
    diagonal += RIDGE * diagonal.mean(-1, keepdim=True)
    coef = torch.cholesky_solve((h.mT @ y).double(), torch.linalg.cholesky(gram)).to(features.dtype)
    return coef[:, :-1].contiguous(), coef[:, -1:].contiguous()


def _two_layers(x: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    w1, b1, w2, b2 = weights
    return torch.baddbmm(b2, torch.relu(torch.baddbmm(b1, x, w1)), w2)


def _adam(params: list[torch.Tensor], lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel (one pass over all parameters per step) on CPU and CUDA."""
    return torch.optim.Adam(params, lr=lr, fused=params[0].device.type in ("cpu", "cuda"))


def _shrink(params: list[torch.Tensor], optimizer: torch.optim.Adam, keep: torch.Tensor, lr: float
            ) -> tuple[list[torch.Tensor], torch.optim.Adam]:
    """The parameters of the maps in ``keep`` as new leaves, with an Adam that continues their state."""
    smaller = [p.detach()[keep].clone().requires_grad_() for p in params]
    state = [optimizer.state[p] for p in params]
    optimizer = _adam(smaller, lr)
    for new, old in zip(smaller, state, strict=True):
        if old:
            optimizer.state[new] = {"step": old["step"].clone(), "exp_avg": old["exp_avg"][keep].clone(),
                                    "exp_avg_sq": old["exp_avg_sq"][keep].clone()}
    return smaller, optimizer


def fit_mlps(
    hidden: torch.Tensor,
    inputs: torch.Tensor,
    distances: list[Distance],
    heldout: torch.Tensor,
    seed: int,
    width: int,
    lr: float = 5e-3,
    batch_size: int = 128,
    max_epochs: int = 100,
    patience: int = 3,
    tolerance: float = 2e-2,
    progress: Callable[[int, int], None] | None = None,
    precision: Literal["float32", "bfloat16"] = "float32",
) -> tuple[list[Mapping], MlpFits]:
    """G one-hidden-layer ReLU MLPs ``g_k: e -> x`` trained together as one batched model (batched
    matrix products, one Adam over minibatches of ``batch_size`` training tokens, the same seeded
    order for every map), map k on ``hidden[k]`` (T, d) with the loss of ``distances[k]`` (``1 - cos``
    or squared L2); inputs standardised with each map's training statistics, the output layer
    started at its least-squares optimum for the random first layer.

    Tokens where ``heldout`` (T,) is set are not trained on: after every epoch their loss decides
    (early stopping). A map whose held-out loss has not improved by ``tolerance`` times its loss at
    the start, for ``patience`` epochs, has converged and is no longer computed; training stops when
    all have, or at ``max_epochs``; each map keeps its weights of lowest held-out loss (the start
    included, and improvements smaller than the tolerance too). Seeded; the global RNG is not used.
    ``progress(epoch, converged)`` is called after every epoch. ``precision``: ``bfloat16`` runs the
    training's matrix products in bfloat16 (weights, losses and the kept maps stay float32; 4-5x
    faster on CPUs with bfloat16 instructions)."""
    g, _, d_in = hidden.shape
    d_out = inputs.shape[-1]
    device = hidden.device
    if heldout.all() or not heldout.any():
        raise ValueError("fit_mlps needs tokens to train on and held-out tokens to stop on")
    order = sorted(range(g), key=lambda k: distances[k] != "cosine")  # cosine maps first: losses on slices
    n_cosine = sum(d == "cosine" for d in distances)
    cosine = torch.arange(g, device=device) < n_cosine  # of the reordered maps
    train, held = ~heldout, heldout
    z = hidden[order].float()
    mean, std = z[:, train].mean(1, keepdim=True), z[:, train].std(1, keepdim=True).clamp(min=1e-6)
    z = (z - mean) / std
    target = inputs.float()
    unit = torch.nn.functional.normalize(target, dim=-1)
    z_train, z_held = z[:, train], z[:, held]
    t_train, t_held, u_train, u_held = target[train], target[held], unit[train], unit[held]
    tokens = z_train.shape[1]
    generator = torch.Generator().manual_seed(seed)
    bound = d_in**-0.5  # nn.Linear's initialisation of the first layer
    w1 = ((torch.rand(g, d_in, width, generator=generator) * 2 - 1) * bound).to(device)
    b1 = ((torch.rand(g, 1, width, generator=generator) * 2 - 1) * bound).to(device)
    w2, b2 = _least_squares_output(torch.relu(torch.baddbmm(b1, z_train, w1)), t_train, u_train, cosine)
    params = [p.requires_grad_() for p in (w1, b1, w2, b2)]
    optimizer = _adam(params, lr)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")
    with torch.no_grad(), autocast:
        start = _loss(_two_layers(z_held, params).float(), t_held, u_held, n_cosine)  # the scale of "improving"
    best = start.clone()  # the lowest held-out loss seen, whose weights are kept
    anchor = start.clone()  # the held-out loss of the last improvement by more than the tolerance
    kept = [p.detach().clone() for p in params]
    stale = torch.zeros(g, dtype=torch.long, device=device)
    epochs = torch.zeros(g, dtype=torch.long, device=device)
    done = torch.zeros(g, dtype=torch.bool, device=device)
    ids = torch.arange(g, device=device)  # the maps still training, which ``params`` hold
    x_train, x_held = z_train, z_held
    for epoch in range(1, max_epochs + 1):
        shuffle = torch.randperm(tokens, generator=generator).to(device)
        xs, ts, us, cos = x_train[:, shuffle], t_train[shuffle], u_train[shuffle], int(cosine[ids].sum())
        with torch.enable_grad():
            for s in range(0, tokens, batch_size):
                optimizer.zero_grad(set_to_none=True)
                with autocast:
                    out = _two_layers(xs[:, s : s + batch_size], params)
                _loss(out.float(), ts[s : s + batch_size], us[s : s + batch_size], cos).sum().backward()
                optimizer.step()
        epochs[ids] += 1
        with torch.no_grad(), autocast:
            held_loss = _loss(_two_layers(x_held, params).float(), t_held, u_held, cos)
        better = held_loss < best[ids]
        for p, k in zip(params, kept, strict=True):
            k[ids[better]] = p.detach()[better]
        best[ids] = torch.where(better, held_loss, best[ids])
        improving = held_loss < anchor[ids] - tolerance * start[ids]
        anchor[ids] = torch.where(improving, held_loss, anchor[ids])
        stale[ids] = torch.where(improving, 0, stale[ids] + 1)
        done[ids] = stale[ids] >= patience
        if progress is not None:
            progress(epoch, int(done.sum()))
        keep = ~done[ids]
        if not keep.any():
            break
        if not keep.all():  # drop the converged maps from the batch (the optimizer's state with them)
            params, optimizer = _shrink(params, optimizer, keep, lr)
            ids, x_train, x_held = ids[keep], x_train[keep], x_held[keep]
    with torch.no_grad():
        train_loss = _loss(_two_layers(z_train, kept), t_train, u_train, n_cosine)
    back = torch.tensor(order, device=device).argsort()  # the caller's order of the maps
    fits = MlpFits(train_loss=train_loss[back], heldout_loss=best[back], epochs=epochs[back], converged=done[back])

    def mapping(k: int) -> Mapping:
        weights = [p[k : k + 1] for p in kept]
        return lambda e: _two_layers(((e.float() - mean[k]) / std[k]).reshape(1, -1, d_in), weights).reshape(
            *e.shape[:-1], d_out)

    return [mapping(int(k)) for k in back], fits


def predict(mapping: Mapping, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``g(e)`` of the valid tokens of (S, N, d) padded hidden states, zero at the padding."""
    pred = hidden.new_zeros(hidden.shape)
    pred[valid] = mapping(hidden[valid]).to(pred.dtype)
    return pred


def identified_per_sequence(
    pred: torch.Tensor,
    inputs: torch.Tensor,
    token_ids: torch.Tensor,
    valid: torch.Tensor,
    distance: Distance,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(S,) identified tokens and (S,) valid tokens of each held-out sequence, for the predictions
    ``pred`` = ``g(e)`` (``predict``) and inputs ``x``, (S, N, d) padded. The identifiability rate is
    their ratio of sums."""
    hits = identified(pred, inputs, token_ids, valid, distance)
    return hits.sum(-1), valid.sum(-1)
