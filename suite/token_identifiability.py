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


@dataclass(frozen=True)
class DistanceKeys:
    """Candidates ``t_j`` (S, N, d) prepared so that ``offset_j + alpha p . k_j`` orders them as the
    distance from a prediction ``p`` does (``nearest_order``): cosine: ``k_j = t_j / ||t_j||``,
    ``offset_j = 0``, ``alpha = -1`` (``-cos`` times ``||p||``, a positive constant of the row); l2:
    ``k_j = t_j``, ``offset_j = ||t_j||^2``, ``alpha = -2`` (the squared distance less ``||p||^2``).
    Padded candidates get ``offset = inf``: never nearest. ``offset`` (S, 1, N), ``keys`` (S, d, N)."""

    offset: torch.Tensor
    keys: torch.Tensor
    alpha: float

    @classmethod
    def of(cls, targets: torch.Tensor, distance: Distance, valid: torch.Tensor | None = None) -> DistanceKeys:
        if distance == "cosine":
            keys, offset, alpha = torch.nn.functional.normalize(targets, dim=-1), targets.new_zeros(targets.shape[:-1]), -1.0
        elif distance == "l2":
            keys, offset, alpha = targets, targets.square().sum(-1), -2.0
        else:
            raise ValueError(f"unknown distance {distance!r} (expected 'cosine' or 'l2')")
        if valid is not None:  # padded candidates: zero keys (whatever they held) at an infinite offset
            keys, offset = keys.masked_fill(~valid.unsqueeze(-1), 0.0), offset.masked_fill(~valid, float("inf"))
        return cls(offset.unsqueeze(-2), keys.transpose(-1, -2), alpha)

    def scores(self, pred: torch.Tensor) -> torch.Tensor:
        """(S, N, N) the scores of (S, N, d) predictions against every candidate of their sequence."""
        return torch.baddbmm(self.offset, pred, self.keys, alpha=self.alpha)


def nearest_order(pred: torch.Tensor, targets: torch.Tensor, distance: Distance) -> torch.Tensor:
    """(S, N, N) scores whose order along the last axis is that of the distance from ``pred[s, i]``
    to ``targets[s, j]`` for (S, N, d) inputs, one batched product (``DistanceKeys``)."""
    return DistanceKeys.of(targets, distance).scores(pred)


def _own_or_same_id(nearest: torch.Tensor, token_ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(S, N) True where the nearest candidate (S, N) of each valid token is its own position or has its id."""
    own = torch.arange(nearest.shape[1], device=nearest.device).expand_as(nearest)
    return ((nearest == own) | (token_ids.gather(1, nearest) == token_ids)) & valid


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
    nearest = DistanceKeys.of(inputs.float(), distance, valid).scores(pred.float()).argmin(-1)
    return _own_or_same_id(nearest, token_ids, valid)


def fit_naive(hidden: torch.Tensor, inputs: torch.Tensor) -> Mapping:
    """``g(e) = e``."""
    return lambda e: e


def fit_linear(hidden: torch.Tensor, inputs: torch.Tensor) -> Mapping:
    """Affine least squares ``g(e) = e W + b`` minimising ``||[E 1] [W; b] - X||_F`` (solved in float64)."""
    h = torch.cat([hidden.double(), hidden.new_ones(hidden.shape[0], 1, dtype=torch.float64)], dim=1)
    coef = torch.linalg.lstsq(h, inputs.double(), driver="gelsd" if h.device.type == "cpu" else None).solution
    w, b = coef[:-1].float(), coef[-1].float()  # fitted in float64, applied in the hidden states' float32
    return lambda e: torch.addmm(b, e.float(), w).to(e.dtype)


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


MAX_CHUNK_ELEMENTS = 1 << 18
"""Most entries (sequences x n^2) of one padded chunk's score matrix (``ScoredTokens``): small
chunks keep the padding of each near its sequences' lengths, one sequence at the least."""


def length_chunks(lengths: torch.Tensor, max_elements: int = MAX_CHUNK_ELEMENTS
                  ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Sequences of similar length grouped for padded batched products, from their lengths (S,)
    (the tokens of sequence s lie at ``offset_s .. offset_s + n_s - 1`` of a flat token axis).

    Each chunk is (``which`` (S_c,) positions in ``lengths``, ``index`` (S_c, N_c) flat token of
    every padded slot (0 at the padding), ``valid`` (S_c, N_c)); sequences are taken in order of
    length while ``S_c N_c^2 <= max_elements`` (one sequence at the least), so padding wastes little
    of the N_c^2 distance matrices."""
    offsets = torch.cumsum(lengths, 0) - lengths
    order = torch.argsort(lengths, stable=True).tolist()
    chunks, start = [], 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and (stop + 1 - start) * int(lengths[order[stop]]) ** 2 <= max_elements:
            stop += 1
        which = torch.tensor(order[start:stop])
        n = int(lengths[which].max())
        valid = torch.arange(n) < lengths[which].unsqueeze(1)
        index = torch.where(valid, offsets[which].unsqueeze(1) + torch.arange(n), 0)
        chunks.append((which, index, valid))
        start = stop
    return chunks


@dataclass(frozen=True)
class ScoredTokens:
    """The held-out sequences' input embeddings ``x``, prepared once for every map, layer and
    distance: S sequences laid end to end on a flat token axis with ``lengths`` (S,), grouped into
    padded chunks of similar length (``length_chunks``), each with its token ids and, per distance,
    its ``DistanceKeys``."""

    lengths: torch.Tensor
    chunks: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, DistanceKeys]]]

    @classmethod
    def of(cls, inputs: torch.Tensor, token_ids: torch.Tensor, lengths: torch.Tensor, distances: tuple[Distance, ...],
           max_elements: int = MAX_CHUNK_ELEMENTS) -> ScoredTokens:
        """From ``inputs`` (T, d) and ``token_ids`` (T,) of the sequences end to end."""
        chunks = []
        for which, index, valid in length_chunks(lengths.cpu(), max_elements):
            if index.shape[1] == 0:  # sequences without tokens: nothing to identify
                continue
            index, valid = index.to(inputs.device), valid.to(inputs.device)
            x = inputs[index].float()
            chunks.append((which, index, valid, token_ids[index], {d: DistanceKeys.of(x, d, valid) for d in distances}))
        return cls(lengths.cpu(), chunks)

    def identified(self, pred: torch.Tensor, distance: Distance) -> tuple[torch.Tensor, torch.Tensor]:
        """(S,) identified tokens and (S,) tokens of each sequence for the predictions ``pred`` =
        ``g(e)`` (T, d) of every token (``identified``'s rule). The identifiability rate is the
        ratio of the sums."""
        hits = torch.zeros(len(self.lengths), dtype=torch.long)
        pred = pred.float()
        for which, index, valid, ids, keys in self.chunks:
            nearest = keys[distance].scores(pred[index]).argmin(-1)
            hits[which] = _own_or_same_id(nearest, ids, valid).sum(-1).cpu()
        return hits, self.lengths.clone()


def identified_per_sequence(
    pred: torch.Tensor,
    inputs: torch.Tensor,
    token_ids: torch.Tensor,
    lengths: torch.Tensor,
    distance: Distance,
    max_elements: int = MAX_CHUNK_ELEMENTS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``ScoredTokens.identified`` for one map and distance: (S,) identified and (S,) tokens of S
    sequences whose predictions ``pred`` and inputs ``x`` (T, d) and ``token_ids`` (T,) lie end to
    end with ``lengths`` (S,)."""
    return ScoredTokens.of(inputs, token_ids, lengths, (distance,), max_elements).identified(pred, distance)
