"""Hidden token attribution: exact forward-mode block norms against a slow reverse-mode reference."""

import torch

from idsuite.suite.hidden_token_attribution import contribution_summary, contributions, jacobian_block_norms


def reference_block_norms(layers_fn, x):
    """Slow and independent: the full Jacobian by reverse mode, then Frobenius norms of each block."""
    jac = torch.autograd.functional.jacobian(layers_fn, x)  # (L, n, d, n, d)
    return jac.square().sum(dim=(2, 4))


def tiny_mixer(n, d, layers=3, seed=0, causal=False):
    g = torch.Generator().manual_seed(seed)
    ws = [torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5 for _ in range(layers)]
    qs = [torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5 for _ in range(layers)]

    def layers_fn(x):
        out, h = [], x
        for w, q in zip(ws, qs, strict=True):
            scores = (h @ q) @ h.T
            if causal:
                scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
            attn = torch.softmax(scores, dim=-1)
            h = torch.nn.functional.layer_norm(h + torch.tanh(attn @ h @ w), (d,))
            out.append(h)
        return torch.stack(out)

    return layers_fn


def test_forward_mode_matches_reverse_mode_reference():
    n, d = 5, 6
    fn = tiny_mixer(n, d)
    x = torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    exact = jacobian_block_norms(fn, x, chunk_size=7)  # chunks that straddle tokens
    ref = reference_block_norms(fn, x)
    torch.testing.assert_close(exact, ref, atol=1e-5, rtol=1e-5)
    c, c_ref = contributions(exact), contributions(ref)
    torch.testing.assert_close(c, c_ref, atol=1e-5, rtol=0)


def test_contributions_sum_to_one():
    fn = tiny_mixer(4, 3, seed=2)
    x = torch.randn(4, 3, dtype=torch.float64)
    c = contributions(jacobian_block_norms(fn, x))
    torch.testing.assert_close(c.sum(-1), torch.ones(3, 4, dtype=torch.float64))
    assert (c >= 0).all()


def test_identity_layers_give_own_contribution_one():
    x = torch.randn(6, 4)
    c = contributions(jacobian_block_norms(lambda h: torch.stack([h, h]), x))
    summary = contribution_summary(c)
    torch.testing.assert_close(summary.own, torch.ones(2, 6))
    assert summary.own_is_top.all()
    torch.testing.assert_close(summary.entropy, torch.zeros(2, 6))


def test_uniform_mixing_and_offsets():
    # every output is the mean of all inputs: c_ij = 1/n, entropy = log n, offsets all 1/n
    n = 4
    x = torch.randn(n, 3)
    c = contributions(jacobian_block_norms(lambda h: h.mean(0, keepdim=True).expand(n, -1).unsqueeze(0), x))
    torch.testing.assert_close(c, torch.full((1, n, n), 1 / n))
    summary = contribution_summary(c)
    torch.testing.assert_close(summary.entropy, torch.full((1, n), torch.log(torch.tensor(float(n))).item()))
    assert summary.offset_count.tolist() == [1, 2, 3, 4, 3, 2, 1]
    torch.testing.assert_close(summary.offset_sum / summary.offset_count, torch.full((1, 2 * n - 1), 1 / n))


def test_causal_contributions_use_only_earlier_inputs():
    n, d = 6, 4
    layers_fn = tiny_mixer(n, d, causal=True, seed=2)
    x = torch.randn(n, d, dtype=torch.float64)
    norms = jacobian_block_norms(layers_fn, x)
    torch.testing.assert_close(norms, reference_block_norms(layers_fn, x), atol=1e-10, rtol=1e-8)
    assert norms.triu(1).abs().max() == 0  # e_i cannot depend on x_j for j > i
    c = contributions(norms, causal=True)
    torch.testing.assert_close(c.sum(-1), torch.ones(3, n, dtype=torch.float64))
    assert c[:, 0, 0].eq(1).all()  # the first token only sees itself
    summary = contribution_summary(c, causal=True)
    assert summary.offset_count.tolist() == list(range(1, n + 1)) + [0] * (n - 1)  # offsets -(n-1)..0, none after
    torch.testing.assert_close(summary.offset_sum[:, n - 1], c.diagonal(dim1=-2, dim2=-1).sum(-1))


def test_estimator_is_exact_with_a_full_set_of_orthogonal_probes_and_close_with_fewer():
    from idsuite.suite.hidden_token_attribution import estimate_block_norms

    n, d = 5, 24
    layers_fn = tiny_mixer(n, d, seed=4)
    x = torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    exact = jacobian_block_norms(layers_fn, x)
    full = estimate_block_norms(layers_fn, x, probes=d, seed=0)
    torch.testing.assert_close(full.squared, exact, rtol=1e-9, atol=1e-12)  # k = d orthonormal directions
    few = estimate_block_norms(layers_fn, x, probes=8, seed=0)
    err = (few.squared - exact).abs() / exact
    assert err.mean() < 0.25
    # the stated standard error covers the actual error (it is conservative for orthogonal probes)
    assert ((few.squared - exact).abs() <= 2 * few.rel_error * few.squared).double().mean() > 0.9
    assert few.rel_error.mean() < 2 * err.mean()
    own_exact = contributions(exact).diagonal(dim1=-2, dim2=-1)
    own_few = contributions(few.squared).diagonal(dim1=-2, dim2=-1)
    assert ((own_few - own_exact).abs() / own_exact).max() < 0.15


def test_progress_is_reported_chunk_by_chunk_inside_one_sequence():
    from idsuite.suite.hidden_token_attribution import estimate_block_norms

    n, d = 5, 6
    fn = tiny_mixer(n, d)
    x = torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    pushed: list[int] = []
    with_progress = jacobian_block_norms(fn, x, chunk_size=7, progress=pushed.append)
    assert pushed == [7, 7, 7, 7, 2]  # n d = 30 products, in chunks of 7
    torch.testing.assert_close(with_progress, jacobian_block_norms(fn, x, chunk_size=7))
    pushed.clear()
    estimate = estimate_block_norms(fn, x, probes=3, seed=0, chunk_size=4, progress=pushed.append)
    assert pushed == [4, 4, 4, 3]  # n k = 15 products
    torch.testing.assert_close(estimate.squared, estimate_block_norms(fn, x, probes=3, seed=0, chunk_size=4).squared)
