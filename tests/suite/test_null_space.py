"""Column space of T_h: exact ranks on constructed heads, agreement with a direct SVD of T."""

import torch

from suite.null_space import column_space, project_rows, value_output_matrix
from suite.rank_deficiency import rank_deficiency


def low_rank(b, h, n, k, r, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, h, n, r, generator=g, dtype=torch.float64) @ torch.randn(b, h, r, k, generator=g, dtype=torch.float64)


def test_known_rank_gives_exact_null_dim():
    # values of rank 3 in a head of size d_h = 8; n = 12 tokens -> null_dim = 12 - 3 = 9
    values = low_rank(2, 3, 12, 8, 3)
    w_out = torch.randn(3, 8, 20, dtype=torch.float64)
    lengths = torch.tensor([12, 12])
    space = column_space(values, w_out, lengths)
    assert space.rank.tolist() == [[3, 3, 3], [3, 3, 3]]
    assert rank_deficiency(space.rank, lengths).null_dim.tolist() == [[9, 9, 9], [9, 9, 9]]


def test_rank_limited_by_w_out():
    # full-rank values (d_h = 8) but W_O^h of rank 2: rank(T) = 2
    values = torch.randn(1, 1, 10, 8, dtype=torch.float64)
    w_out = torch.randn(1, 8, 2, dtype=torch.float64) @ torch.randn(1, 2, 16, dtype=torch.float64)
    space = column_space(values, w_out, torch.tensor([10]))
    assert space.rank.item() == 2


def test_rank_bounded_by_head_size_and_length():
    values = torch.randn(2, 2, 20, 6, dtype=torch.float64)
    values[1, :, 4:] = 0  # second sequence has n = 4 (padding rows are zero)
    space = column_space(values, torch.randn(2, 6, 24, dtype=torch.float64), torch.tensor([20, 4]))
    assert space.rank.tolist() == [[6, 6], [4, 4]]
    assert rank_deficiency(space.rank, torch.tensor([20, 4])).null_dim.tolist() == [[14, 14], [0, 0]]


def test_matches_direct_svd_of_t():
    values = low_rank(3, 2, 15, 8, 5, seed=1)
    values[0, :, 7:] = 0
    lengths = torch.tensor([7, 15, 15])
    w_out = torch.randn(2, 8, 30, dtype=torch.float64)
    space = column_space(values, w_out, lengths)
    t = value_output_matrix(values, w_out)
    for b in range(3):
        n = int(lengths[b])
        for h in range(2):
            tb = t[b, h, :n]
            s = torch.linalg.svdvals(tb)
            tol = s[0] * max(n, 30) * torch.finfo(torch.float64).eps
            assert space.rank[b, h].item() == int((s > tol).sum())
            u = space.basis[b, h, :n, : space.rank[b, h]]
            # same column space: projector onto col(T) built from an independent SVD
            ref = torch.linalg.svd(tb, full_matrices=False).U[:, : space.rank[b, h]]
            torch.testing.assert_close(u @ u.T, ref @ ref.T, atol=1e-10, rtol=0)
            if n < 15:  # basis vectors of col(T) vanish on padded rows
                assert space.basis[b, h, n:].abs().max() < 1e-12


def test_projection_is_idempotent_and_keeps_column_space():
    values = low_rank(1, 1, 9, 4, 4)
    w_out = torch.randn(1, 4, 12, dtype=torch.float64)
    space = column_space(values, w_out, torch.tensor([9]))
    a = torch.softmax(torch.randn(1, 1, 9, 9, dtype=torch.float64), -1)
    once = project_rows(a, space.basis)
    torch.testing.assert_close(project_rows(once, space.basis), once)
    t = value_output_matrix(values, w_out)
    torch.testing.assert_close(project_rows(t.transpose(-1, -2), space.basis), t.transpose(-1, -2))
