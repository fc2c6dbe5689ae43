"""Context-mixing measures on constructed layers: identity layers give every measure own share 1, a
linear attention-only layer gives the norm measure its closed form and the Jacobian's ordering,
rollouts compose, value zeroing of an unattended token changes nothing, causal rows stay causal."""

import torch

from idsuite.suite.context_mixing import MixingLayer, agreement, local_matrices, rollout, row_normalise
from idsuite.suite.hidden_token_attribution import contributions, jacobian_block_norms
from idsuite.suite.specs.context_mixing import MEASURES


def layer(attention, transformed, x, form="pre"):
    """A pre-norm layer ``e = x + o`` (``o_i = sum_j u_ij``) with a linear tail for value zeroing:
    subtracting from the attention output subtracts from the layer's output."""
    u = torch.einsum("hij,hjd->ijd", attention, transformed)
    target = x + u.sum(1)
    return MixingLayer(form, x, attention, transformed, output=target, target=target,
                       rerun=lambda subtract: target.unsqueeze(0) - subtract, block=None)


def random_inputs(n=6, d=8, heads=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(heads, n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64),
            torch.softmax(torch.randn(heads, n, n, generator=g, dtype=torch.float64), -1))


def test_identity_attention_gives_every_measure_own_share_one():
    transformed, x, _ = random_inputs()
    eye = torch.eye(6, dtype=torch.float64).expand(2, 6, 6)
    matrices = local_matrices(layer(eye, transformed, x), causal=False)
    assert set(matrices) == {m.name for m in MEASURES}
    for measure in MEASURES:
        m = matrices[measure.name]
        normalised = row_normalise(m, False)
        torch.testing.assert_close(normalised.diagonal(), torch.ones(6, dtype=torch.float64), msg=measure.name)
        rolled = rollout([m, m, m], False, identity=measure.rollout_identity, normalise_each=not measure.raw_product)
        torch.testing.assert_close(rolled[-1], torch.eye(6, dtype=torch.float64), msg=measure.name)


def test_norm_measure_on_a_linear_attention_layer_is_its_closed_form_and_orders_like_the_jacobian():
    n, d = 5, 8
    g = torch.Generator().manual_seed(1)
    x = torch.linalg.qr(torch.randn(d, n, generator=g, dtype=torch.float64)).Q.T  # orthonormal rows: ||x_j|| = 1
    w = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64)).Q  # orthogonal: ||x_j W|| = 1
    a = torch.softmax(torch.randn(1, n, n, generator=g, dtype=torch.float64), -1)
    matrices = local_matrices(layer(a, (x @ w).unsqueeze(0), x), causal=False)
    torch.testing.assert_close(matrices["norm"], a[0])  # ||A_ij x_j W|| = A_ij: rows already sum to one
    jacobian = jacobian_block_norms(lambda h: (h + a[0] @ h @ w).unsqueeze(0), x)  # dE_i/dx_j = d_ij I + A_ij W^T
    c = contributions(jacobian)[0]
    off = ~torch.eye(n, dtype=torch.bool)
    for i in range(n):  # off the diagonal ||J_ij||_F = A_ij ||W||_F: the same ordering as the norm measure
        ranks = lambda v: v.argsort().argsort()  # noqa: E731
        assert torch.equal(ranks(matrices["norm"][i][off[i]]), ranks(c[i][off[i]]))
    score = agreement(row_normalise(matrices["norm"] * off, False), row_normalise(c * off, False), False)
    torch.testing.assert_close(score.spearman, torch.ones(n, dtype=torch.float64))


def test_rollout_composes_over_three_layers():
    g = torch.Generator().manual_seed(2)
    m = [torch.softmax(torch.randn(4, 4, generator=g, dtype=torch.float64), -1) for _ in range(3)]
    torch.testing.assert_close(rollout(m, False)[-1], m[2] @ m[1] @ m[0])
    half = [(mi + torch.eye(4, dtype=torch.float64)) / 2 for mi in m]
    torch.testing.assert_close(rollout(m, False, identity=True)[-1], half[2] @ half[1] @ half[0])
    raw = [mi * torch.arange(1.0, 5.0, dtype=torch.float64).view(-1, 1) for mi in m]  # unnormalised rows
    torch.testing.assert_close(rollout(raw, False, normalise_each=False)[-1], row_normalise(raw[2] @ raw[1] @ raw[0], False))


def test_value_zeroing_a_token_no_head_attends_to_changes_nothing():
    transformed, x, a = random_inputs()
    a = a.clone()
    a[:, :, 3] = 0  # nobody attends to token 3
    a = a / a.sum(-1, keepdim=True)
    vz = local_matrices(layer(a, transformed, x), causal=False)["value_zeroing"]
    assert torch.equal(vz[:, 3], torch.zeros(6, dtype=torch.float64)) and (vz.sum(-1) > 0.999).all()


def test_causal_versions_put_nothing_on_later_tokens():
    transformed, x, a = random_inputs(seed=3)
    a = row_normalise(a, causal=True)
    matrices = local_matrices(layer(a, transformed, x), causal=True)
    for name, m in matrices.items():
        assert torch.equal(m.triu(1), torch.zeros_like(m)), name
        rolled = rollout([m, m], True, identity=name == "attention", normalise_each=name != "globenc")
        assert torch.equal(rolled.triu(1), torch.zeros_like(rolled)), name
        assert torch.allclose(rolled[:, 0, 0], torch.ones(2, dtype=torch.float64)), name  # row 0 only sees itself
