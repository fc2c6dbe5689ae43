"""Effective attention: the head output is unchanged, and it equals raw attention without a null space."""

import torch

from idsuite.suite.effective_attention import (
    argmax_change,
    null_share,
    position_mass,
    row_pearson,
)
from idsuite.suite.masks import pair_mask
from idsuite.suite.null_space import column_space, project_rows, value_output_matrix


def random_head(n, d_h, d, b=2, h=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(b, h, n, d_h, generator=g, dtype=torch.float64)
    w_out = torch.randn(h, d_h, d, generator=g, dtype=torch.float64)
    attention = torch.softmax(3 * torch.randn(b, h, n, n, generator=g, dtype=torch.float64), -1)
    return values, w_out, attention


def test_effective_attention_leaves_head_output_unchanged():
    values, w_out, a = random_head(n=20, d_h=6, d=16)
    lengths = torch.tensor([20, 20])
    space = column_space(values, w_out, lengths)
    eff = project_rows(a, space.basis)
    t = value_output_matrix(values, w_out)
    out, out_eff = a @ t, eff @ t
    assert ((out_eff - out).norm() / out.norm()).item() < 1e-5
    assert not torch.allclose(eff, a)  # n > d_h: there is a null space, so A changed
    assert (null_share(a, eff) > 0.1).all()


def test_equals_raw_attention_when_null_space_is_empty():
    values, w_out, a = random_head(n=5, d_h=8, d=16)
    space = column_space(values, w_out, torch.tensor([5, 5]))
    assert (space.rank == 5).all()
    eff = project_rows(a, space.basis)
    torch.testing.assert_close(eff, a)
    assert null_share(a, eff).abs().max() < 1e-12
    allowed = pair_mask(torch.tensor([5, 5]), 5, causal=False)
    torch.testing.assert_close(row_pearson(a, eff, allowed), torch.ones(2, 3, dtype=torch.float64))
    assert argmax_change(a, eff, allowed).abs().max() == 0


def test_padding_is_ignored():
    values, w_out, a = random_head(n=12, d_h=4, d=10, b=1, h=1)
    lengths = torch.tensor([12])
    full = column_space(values, w_out, lengths)
    eff = project_rows(a, full.basis)
    # the same sequence padded with 5 zero positions gives the same numbers
    pv = torch.cat([values, torch.zeros(1, 1, 5, 4, dtype=torch.float64)], dim=2)
    pa = torch.zeros(1, 1, 17, 17, dtype=torch.float64)
    pa[..., :12, :12] = a
    padded = column_space(pv, w_out, lengths)
    peff = project_rows(pa, padded.basis)
    torch.testing.assert_close(peff[..., :12, :12], eff)
    allowed, pallowed = pair_mask(lengths, 12, False), pair_mask(lengths, 17, False)
    torch.testing.assert_close(null_share(pa, peff), null_share(a, eff))
    torch.testing.assert_close(row_pearson(pa, peff, pallowed), row_pearson(a, eff, allowed))
    torch.testing.assert_close(argmax_change(pa, peff, pallowed), argmax_change(a, eff, allowed))


def test_position_mass_and_argmax_on_constructed_rows():
    a = torch.tensor([[[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.5, 0.25, 0.25]]]], dtype=torch.float64)
    other = torch.tensor([[[[0.1, 0.2, 0.7], [0.1, 0.1, 0.8], [0.2, 0.6, 0.2]]]], dtype=torch.float64)
    allowed = pair_mask(torch.tensor([3]), 3, False)
    first = torch.tensor([[True, False, False]])
    both = torch.stack([first, ~first], dim=-1)  # (B, N, P): the first position, the others
    expected = torch.tensor([[[(0.7 + 0.1 + 0.5) / 3, (0.3 + 0.9 + 0.5) / 3]]], dtype=torch.float64)
    torch.testing.assert_close(position_mass(a, both, allowed), expected)
    torch.testing.assert_close(argmax_change(a, other, allowed), torch.tensor([[2 / 3]], dtype=torch.float64))
    # Pearson of row 1 with itself is 1; row 0 against 1 - row 0 is -1
    r = row_pearson(a[..., :2, :], torch.stack([1 - a[0, 0, 0], a[0, 0, 1]]).view(1, 1, 2, 3), allowed[:, :2])
    torch.testing.assert_close(r, torch.tensor([[0.0]], dtype=torch.float64), atol=1e-12, rtol=0)
