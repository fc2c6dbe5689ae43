"""Hidden token attribution (how much each input token contributes to each hidden token) from Jacobian block norms, exact or estimated.

``J_ij^l = d e_i^l / d x_j`` (a d x d block, ``x = e^0`` the embedding-layer output). The
contribution of input ``j`` to hidden token ``i`` at layer ``l`` is
``c_ij^l = ||J_ij^l||_F / sum_k ||J_ik^l||_F`` (Brunner et al. 2020, section 6, with the Frobenius
norm of the whole block as docs/metrics.md defines it; not the norm of the gradient of a coordinate sum).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import jvp, vmap

LayersFn = Callable[[torch.Tensor], torch.Tensor]
"""Maps input embeddings ``x`` (n, d) to hidden states of every layer ``e^l``, stacked (L, n, d)."""
Progress = Callable[[int], None]
"""Called with the number of forward-mode products just pushed (progress inside one sequence)."""


def product_flops(n: int, d: int, layers: int) -> float:
    """Rough floating-point operations of one forward-mode product through ``layers`` layers of width
    ``d`` for ``n`` tokens: about three forward passes of ``24 d^2 + 4 n d`` per token and layer
    (projections and a 4d feed-forward map, attention scores and mixing)."""
    return 3.0 * n * layers * (24.0 * d * d + 4.0 * n * d)


def sequence_flops(method: str, n: int, d: int, layers: int, probes: int) -> float:
    """Rough cost of one sequence's block norms: ``n d`` products exact (``method`` ``exact``), ``n
    min(probes, d)`` estimated, each ``product_flops``."""
    return n * (d if method == "exact" else min(probes, d)) * product_flops(n, d, layers)


TANGENT_ELEMENTS = 1 << 22
"""Most tangent entries (products x n x d) pushed through the model in one batch by default. Bigger
batches of products on long sequences spill out of the caches: on the 2-core CPU a 135M decoder's
estimate took 2.7 s per token of a 128-token sequence with 64 products a batch, 5.0 s with d = 576."""


def products_per_batch(n: int, d: int) -> int:
    """The default batch of forward-mode products for a sequence of ``n`` tokens of width ``d``."""
    return max(1, TANGENT_ELEMENTS // (n * d))


def exact_or_estimate(asked: str, n: int, d: int, layers: int, budget: float, probes: int,
                      sample_budget: float = math.inf, sequences: int = 1) -> tuple[str, str]:
    """The method to use for a longest sequence of ``n`` tokens, and what the label says about it: the
    estimator where exact block norms are asked for but would cost more than ``budget`` for that
    sequence, or more than ``sample_budget`` for ``sequences`` of them (the fewest the sample needs
    for an interval, within the metric's cost budget)."""
    estimate = f"estimate with {min(probes, d)} probe directions per token"
    if asked == "estimate":
        return "estimate", estimate
    cost = sequence_flops("exact", n, d, layers, probes)
    if cost > budget:
        return "estimate", (f"{estimate}, not exact: exact block norms would cost ~{cost:.1e} floating-point operations "
                            f"for a sequence of {n} tokens (d = {d}, {layers} layers), over exact_max_flops = {budget:.1e}")
    if sequences * cost > sample_budget:
        return "estimate", (f"{estimate}, not exact: exact block norms of {sequences} sequences of {n} tokens (d = {d}, "
                            f"{layers} layers) would cost ~{sequences * cost:.1e} floating-point operations, over the "
                            f"cost budget max_flops = {sample_budget:.1e}")
    return "exact", "exact block norms"


def _squared_norms(columns: torch.Tensor) -> torch.Tensor:
    """``||v||^2`` over the last dimension (one fused reduction; ``square().sum()`` makes two passes)."""
    return torch.linalg.vector_norm(columns, dim=-1).square()


@torch.no_grad()  # forward mode needs no tape; a model whose weights require grad would record one
def jacobian_block_norms(layers_fn: LayersFn, x: torch.Tensor, chunk_size: int | None = None,
                         progress: Progress | None = None) -> torch.Tensor:
    """(L, n, n) squared Frobenius norms ``||J_ij^l||_F^2`` by forward mode.

    One Jacobian-vector product per input coordinate ``(j, k)`` (tangent = one-hot) gives column
    ``(j, k)`` of every ``J^l`` at once: ``n * d`` products for all layers and output tokens, batched
    with ``vmap`` in chunks of ``chunk_size`` coordinates (default ``products_per_batch``);
    ``progress`` is called with each chunk's size.
    """
    n, d = x.shape
    chunk = chunk_size or products_per_batch(n, d)
    coords = torch.arange(n * d, device=x.device)
    total: torch.Tensor | None = None
    push = vmap(lambda t: jvp(layers_fn, (x,), (t,))[1])
    for start in range(0, n * d, chunk):
        idx = coords[start : start + chunk]
        tangents = torch.zeros(len(idx), n * d, dtype=x.dtype, device=x.device)
        tangents[torch.arange(len(idx)), idx] = 1
        cols = push(tangents.view(len(idx), n, d))  # (C, L, n_out, d)
        sq = _squared_norms(cols)  # (C, L, n_out)
        if total is None:
            total = torch.zeros(sq.shape[1], n, n, dtype=sq.dtype, device=x.device)
        total.index_add_(2, idx // d, sq.permute(1, 2, 0))
        if progress is not None:
            progress(len(idx))
    assert total is not None
    return total


@dataclass(frozen=True)
class BlockNormEstimate:
    """``squared`` (L, n, n): estimates of ``||J_ij^l||_F^2``; ``rel_error`` (L, n, n): their
    relative standard error (standard deviation over probes / sqrt(k) / mean); ``leave_one_out``
    (k, L, n, n): the estimates without probe q (the same direction index for every input token),
    for a jackknife of anything computed from the norms."""

    squared: torch.Tensor
    rel_error: torch.Tensor
    leave_one_out: torch.Tensor


@torch.no_grad()
def estimate_block_norms(
    layers_fn: LayersFn, x: torch.Tensor, probes: int, seed: int, chunk_size: int | None = None,
    progress: Progress | None = None,
) -> BlockNormEstimate:
    """``||J_ij^l||_F^2 ~ mean_v ||J_ij^l v||^2`` over ``probes`` random directions v at input token j.

    For each input token the k = ``probes`` directions are orthonormal (QR of a Gaussian d x k
    matrix) and scaled by ``sqrt(d)``, so each ``||J v||^2`` is unbiased and k = d is exact. Costs
    ``n * k`` forward-mode products instead of ``n * d``, batched in chunks of ``chunk_size``
    (default ``products_per_batch``; ``progress``: called with each chunk's size).
    """
    n, d = x.shape
    k = min(probes, d)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    directions = torch.linalg.qr(torch.randn(n, d, k, generator=gen, dtype=torch.float64)).Q  # (n, d, k)
    directions = (directions * d**0.5).to(dtype=x.dtype, device=x.device).transpose(1, 2)  # (n, k, d)
    tangents = torch.zeros(n, k, n, d, dtype=x.dtype, device=x.device)
    tangents[torch.arange(n), :, torch.arange(n)] = directions
    tangents = tangents.view(n * k, n, d)
    push = vmap(lambda t: jvp(layers_fn, (x,), (t,))[1])
    chunk = chunk_size or products_per_batch(n, d)
    parts = []
    for s in range(0, n * k, chunk):
        parts.append(_squared_norms(push(tangents[s : s + chunk])))
        if progress is not None:
            progress(len(parts[-1]))
    samples = torch.cat(parts)  # (n*k, L, n_out)
    samples = samples.view(n, k, *samples.shape[1:]).permute(2, 3, 0, 1)  # (L, n_out, n_in, k)
    mean = samples.mean(-1)
    spread = samples.std(-1) / k**0.5 if k > 1 else torch.full_like(mean, float("nan"))
    leave_one_out = ((samples.sum(-1, keepdim=True) - samples) / max(k - 1, 1)).permute(3, 0, 1, 2)
    return BlockNormEstimate(squared=mean, rel_error=spread / mean.clamp(min=torch.finfo(mean.dtype).tiny),
                             leave_one_out=leave_one_out)


def contributions(block_norms_sq: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """``c_ij^l = ||J_ij^l||_F / sum_k ||J_ik^l||_F`` from squared norms (L, n, n); rows sum to 1.

    ``causal``: only inputs ``j <= i`` can reach token i, so the sum runs over them and ``c_ij = 0``
    for ``j > i``.
    """
    norms = block_norms_sq.clamp(min=0).sqrt()
    if causal:
        norms = norms.tril()
    return norms / norms.sum(-1, keepdim=True)


@dataclass(frozen=True)
class ContributionSummary:
    """Per-token summaries of one sequence's contributions ``c^l`` (L, n, n).

    ``own`` (L, n): ``c_ii``; ``own_is_top`` (L, n): whether token i's largest contributor is its own
    input; ``entropy`` (L, n): entropy (nats) of ``c_i.``; ``offset_sum`` (L, 2n-1) and
    ``offset_count`` (2n-1,): sum and number of ``c_ij`` with ``j - i = offset`` for offsets
    ``-(n-1) .. n-1``, so that means can be pooled over sequences of different lengths (a causal
    model counts only ``j <= i``).
    """

    own: torch.Tensor
    own_is_top: torch.Tensor
    entropy: torch.Tensor
    offset_sum: torch.Tensor
    offset_count: torch.Tensor


def contribution_summary(c: torch.Tensor, causal: bool = False) -> ContributionSummary:
    """Summaries of one sequence's contributions ``c`` (L, n, n)."""
    n_layers, n, _ = c.shape
    positions = torch.arange(n, device=c.device)
    offsets = positions.view(1, -1) - positions.view(-1, 1)  # (i, j) -> j - i
    pairs = offsets <= 0 if causal else torch.ones_like(offsets, dtype=torch.bool)
    offset_index = offsets[pairs] + n - 1
    offset_sum = torch.zeros(n_layers, 2 * n - 1, dtype=c.dtype, device=c.device)
    offset_sum.index_add_(1, offset_index, c[:, pairs])
    offset_count = torch.bincount(offset_index, minlength=2 * n - 1)
    return ContributionSummary(
        own=c.diagonal(dim1=-2, dim2=-1),
        own_is_top=c.argmax(-1) == positions,
        entropy=-(c * c.clamp(min=1e-30).log()).sum(-1),
        offset_sum=offset_sum,
        offset_count=offset_count,
    )
