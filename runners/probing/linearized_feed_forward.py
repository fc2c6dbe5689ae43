"""Feed-forward maps linearised once per token, for many forward-mode products through a model.

A block's feed-forward map f acts on every position alone, so its Jacobian is block diagonal: one
``d x d`` matrix ``J_p = df/dh (h_p)`` per position p. Pushing P products through f costs P passes
through its wide layers (about 16 d^2 per position for a 4d-wide hidden layer); forming every
``J_p`` costs about d such passes per position, after which a product costs one ``d x d`` matrix
product (2 d^2). Exact block norms push ``n * d`` products, so forming pays off for n >= 2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch.func import jacfwd, vmap

FORMING_COST = 2
"""Linearise when ``n * products_per_token >= FORMING_COST * d``. Measured on a 2-core CPU (MiniLM,
9 tokens): forming took as long as about d / 2 products through the model and halved the cost of
each product, so it pays off from about d products; 2 d leaves a margin."""
JACOBIAN_BUDGET_BYTES = 2 * 2**30
"""The ``L * n`` matrices of ``d x d`` are kept for the whole sequence; above this, products go
through the maps themselves."""


def pays_off(n_tokens: int, products_per_token: int, d: int, n_layers: int, itemsize: int) -> bool:
    """Whether forming every layer's per-token Jacobians is cheaper than pushing the products through."""
    fits = n_layers * n_tokens * d * d * itemsize <= JACOBIAN_BUDGET_BYTES
    return fits and n_tokens * products_per_token >= FORMING_COST * d


class _PerTokenProduct(torch.autograd.Function):
    """``out_p = J_p delta_p`` for constant per-position matrices ``J`` (n, d_out, d_in).

    Its vmap rule keeps a batch of tangents in one matrix product per position; vmap's generic rule
    for ``einsum``/``bmm`` with one unbatched operand copies ``J`` once per tangent.
    """

    @staticmethod
    def forward(delta: torch.Tensor, jac: torch.Tensor) -> torch.Tensor:
        return torch.einsum("pij,...pj->...pi", jac, delta)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_forward(inputs[1])

    @staticmethod
    def jvp(ctx, delta_tangent: torch.Tensor, jac_tangent: None) -> torch.Tensor:
        (jac,) = ctx.saved_tensors
        return _PerTokenProduct.apply(delta_tangent, jac)

    @staticmethod
    def vmap(info, in_dims, delta: torch.Tensor, jac: torch.Tensor):
        if in_dims[1] is not None:
            raise NotImplementedError("the per-token Jacobians are constants; only the tangents may be batched")
        return _PerTokenProduct.forward(delta.movedim(in_dims[0], 0), jac), 0


def token_jacobians(fn: Callable[[torch.Tensor], torch.Tensor], hidden: torch.Tensor) -> torch.Tensor:
    """``J_p = d fn / dh_p`` (n, d_out, d_in) at every position of ``hidden`` (1, n, d_in), for a
    ``fn`` that maps each position on its own (a feed-forward map)."""
    return vmap(jacfwd(lambda h: fn(h.view(1, 1, -1)).view(-1)))(hidden[0])


class LinearizedFeedForward:
    """Stand-ins for the feed-forward map at ``path`` in every block (a module or a method).

    Inside ``installed()`` each stand-in returns the map's own value, and for forward-mode products
    ``J_p t_p`` with the Jacobians formed on the first pass (one per call, in call order, so a block
    shared by several layers gets one per layer). Later passes must reach the maps with the same
    inputs: the products are those at the point of the first pass, and a pass anywhere else is an
    error rather than a silently wrong derivative.
    """

    def __init__(self, blocks: list[torch.nn.Module], path: str) -> None:
        self.targets: dict[tuple[int, str], tuple[object, str, Callable]] = {}
        for block in blocks:
            owner_path, _, name = path.rpartition(".")
            owner = block.get_submodule(owner_path) if owner_path else block
            target = getattr(owner, name)
            owner, name = (target, "forward") if isinstance(target, torch.nn.Module) else (owner, name)
            self.targets[(id(owner), name)] = (owner, name, getattr(owner, name))
        self.formed: list[tuple[torch.Tensor, torch.Tensor]] = []  # (input at the first pass, J) per call
        self.calls = 0

    @contextmanager
    def installed(self) -> Iterator[None]:
        self.calls = 0
        for owner, name, original in self.targets.values():
            owner.__dict__[name] = self._stand_in(original)  # shadows the class's method
        try:
            yield
        finally:
            for owner, name, _ in self.targets.values():
                del owner.__dict__[name]

    def _stand_in(self, original: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        def feed_forward(hidden: torch.Tensor) -> torch.Tensor:
            point = hidden.detach()  # the value without its tangent
            call, self.calls = self.calls, self.calls + 1
            if call == len(self.formed):
                self.formed.append((point, token_jacobians(original, point)))
            formed_at, jac = self.formed[call]
            tolerance = 8 * torch.finfo(point.dtype).eps  # the same computation again, up to rounding
            if formed_at.shape != point.shape or not torch.allclose(point, formed_at, rtol=tolerance, atol=tolerance):
                raise ValueError("the feed-forward Jacobians were formed at another input; this function "
                                 "gives forward-mode products only at the point it was built for")
            return original(point) + _PerTokenProduct.apply(hidden - point, jac)  # hidden - point: tangent only

        return feed_forward
