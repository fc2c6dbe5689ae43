"""Token identifiability: exact recoveries on constructed data, and the scoring rule itself."""

import torch

from suite.identifiability import fit_mapping, identifiability_rate, identified
from suite.masks import token_mask


def make_sequences(s=12, n=9, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(s, n, d, generator=g)
    lengths = torch.randint(3, n + 1, (s,), generator=g)
    valid = token_mask(lengths, n)
    x = x * valid.unsqueeze(-1)
    ids = torch.arange(s * n).view(s, n)  # every token distinct
    return x, ids, valid


def test_naive_cosine_at_embedding_layer_is_one():
    x, ids, valid = make_sequences()
    g = fit_mapping("naive", x[valid], x[valid], "cosine", seed=0)
    assert identifiability_rate(g, x, x, ids, valid, "cosine") == 1.0
    assert identifiability_rate(g, x, x, ids, valid, "l2") == 1.0


def test_linear_map_of_inputs_is_identified_by_linear_g():
    x, ids, valid = make_sequences(d=16)
    g = torch.Generator().manual_seed(3)
    m = torch.randn(16, 16, generator=g)
    hidden = (x @ m + torch.randn(16, generator=g)) * valid.unsqueeze(-1)  # e = x M + b, exactly
    train, test = slice(0, 8), slice(8, 12)
    mapping = fit_mapping("linear", hidden[train][valid[train]], x[train][valid[train]], "cosine", seed=0)
    for distance in ("cosine", "l2"):
        assert identifiability_rate(mapping, hidden[test], x[test], ids[test], valid[test], distance) == 1.0
    # the naive map does not undo M
    naive = fit_mapping("naive", hidden, x, "l2", seed=0)
    assert identifiability_rate(naive, hidden[test], x[test], ids[test], valid[test], "l2") < 1.0


def test_mlp_learns_an_easy_map_and_is_seeded():
    x, ids, valid = make_sequences(s=40, d=8, seed=1)
    hidden = 2.0 * x + 1.0
    a = fit_mapping("mlp", hidden[valid], x[valid], "l2", seed=5, mlp_steps=300, mlp_lr=1e-2)
    b = fit_mapping("mlp", hidden[valid], x[valid], "l2", seed=5, mlp_steps=300, mlp_lr=1e-2)
    torch.testing.assert_close(a(hidden), b(hidden))
    assert identifiability_rate(a, hidden, x, ids, valid, "l2") > 0.95


def test_repeated_token_counts_when_nearest_has_same_id_and_padding_is_never_nearest():
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.0, 0.0]]])
    ids = torch.tensor([[7, 8, 7, 0]])
    valid = torch.tensor([[True, True, True, False]])
    pred = torch.tensor([[[0.95, 0.05], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]])  # token 2 lands nearest token 0
    hits = identified(pred, x, ids, valid, "l2")
    assert hits.tolist() == [[True, True, True, False]]
    ids_distinct = torch.tensor([[7, 8, 9, 0]])
    assert identified(pred, x, ids_distinct, valid, "cosine").tolist() == [[True, True, False, False]]
