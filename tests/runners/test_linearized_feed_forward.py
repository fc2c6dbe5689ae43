"""Linearised feed-forward maps: per-token Jacobians against autograd, products through a stand-in
equal to products through the map itself, and a pass at another point refused."""

import pytest
import torch
from torch.func import jvp, vmap

from idsuite.runners.probing.linearized_feed_forward import (
    LinearizedFeedForward,
    pays_off,
    token_jacobians,
)

N, D = 5, 6


class Block(torch.nn.Module):
    """A token mixer followed by a per-token feed-forward map (with residual), the shape of a layer."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.mix = torch.randn(N, N, generator=g, dtype=torch.float64) / N
        self.mlp = torch.nn.Sequential(torch.nn.Linear(D, 3 * D), torch.nn.GELU(), torch.nn.Linear(3 * D, D)).double()
        for p in self.mlp.parameters():
            torch.nn.init.normal_(p, generator=g)

    def forward(self, h):
        return self.feed_forward(torch.tanh(self.mix @ h))

    def feed_forward(self, h):  # a method target, as BERT's feed_forward_chunk
        return torch.nn.functional.layer_norm(h + self.mlp(h), (D,))


def model_fn(blocks):
    def fn(x):
        h, out = x.unsqueeze(0), []
        for block in blocks:
            h = block(h)
            out.append(h[0])
        return torch.stack(out)

    return fn


def pushed(fn, x, tangents):
    return vmap(lambda t: jvp(fn, (x,), (t,))[1])(tangents)


def test_token_jacobians_match_autograd_per_position():
    block = Block(0)
    h = torch.randn(1, N, D, dtype=torch.float64)
    jac = token_jacobians(block.feed_forward, h)
    full = torch.autograd.functional.jacobian(block.feed_forward, h)[0, :, :, 0]  # (n, d, n, d)
    for p in range(N):
        torch.testing.assert_close(jac[p], full[p, :, p])
    full[range(N), :, range(N)] = 0
    assert full.abs().max() == 0  # the map is per token: nothing else to form


@pytest.mark.parametrize("path", ["feed_forward", "mlp"])  # a method (the stand-in sees the residual) or a module
def test_products_through_stand_ins_equal_products_through_the_maps(path):
    blocks = [Block(1), Block(2), Block(1)]
    blocks[2] = blocks[0]  # a block shared by two layers (ALBERT) gets one set of Jacobians per call
    fn = model_fn(blocks)
    x = torch.randn(N, D, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    tangents = torch.randn(7, N, D, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    linearized = LinearizedFeedForward(blocks, path)
    with linearized.installed():
        value = fn(x)  # the first pass forms the Jacobians
    assert len(linearized.formed) == 3

    def through_stand_ins(x):
        with linearized.installed():
            return fn(x)

    torch.testing.assert_close(through_stand_ins(x), value)
    torch.testing.assert_close(pushed(through_stand_ins, x, tangents), pushed(fn, x, tangents), rtol=1e-10, atol=1e-10)
    assert all(path not in vars(b) and "forward" not in vars(b.mlp) for b in blocks)  # the maps are back
    with pytest.raises(ValueError, match="formed at another input"):
        through_stand_ins(x + 0.1)


def test_forming_pays_off_for_exact_norms_not_for_a_few_probes():
    assert pays_off(n_tokens=9, products_per_token=384, d=384, n_layers=6, itemsize=4)  # exact: n * d products
    assert not pays_off(n_tokens=9, products_per_token=12, d=384, n_layers=6, itemsize=4)  # 12 probes per token
    assert not pays_off(n_tokens=16, products_per_token=4096, d=4096, n_layers=32, itemsize=4)  # 34 GB of Jacobians
