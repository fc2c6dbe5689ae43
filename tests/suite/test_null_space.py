"""Column space of T_h: exact ranks on constructed heads, agreement with a direct SVD of T,
and per-row (causal, sliding-window) projections against a slow row-by-row reference."""

import hypothesis
import hypothesis.strategies as st
import pytest
import torch

from idsuite.suite.masks import pair_mask
from idsuite.suite.null_space import (
    column_space,
    duplicate_rows,
    project_attention,
    project_attention_by_row,
    project_rows,
    reduced_values,
    value_output_matrix,
)
from idsuite.suite.rank_deficiency import rank_deficiency

EPS64 = torch.finfo(torch.float64).eps


def null_dims(rank, lengths):
    """Encoder null_dim from a column space's ranks (every row sees all n keys)."""
    context = pair_mask(lengths, int(lengths.max()), causal=False).sum(-1)
    row_rank = rank.unsqueeze(-1) * (context > 0).unsqueeze(1)
    return rank_deficiency(row_rank, context, lengths).null_dim


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
    assert null_dims(space.rank, lengths).tolist() == [[9, 9, 9], [9, 9, 9]]


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
    assert null_dims(space.rank, torch.tensor([20, 4])).tolist() == [[14, 14], [0, 0]]


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
            tol = s[0] * max(n, 30) * EPS64
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


def slow_row_projection(a, t, allowed):
    """Reference: for each row i, SVD of T restricted to row i's keys, then project row i (one head)."""
    n, d = t.shape
    eff = torch.zeros_like(a)
    ranks = []
    for i in range(n):
        keys = allowed[i].nonzero().flatten()
        if len(keys) == 0:
            ranks.append(0)
            continue
        u, s, _ = torch.linalg.svd(t[keys], full_matrices=False)
        r = int((s > s[0] * max(len(keys), d) * EPS64).sum())
        ranks.append(r)
        eff[i, keys] = (a[i, keys] @ u[:, :r]) @ u[:, :r].T
    return eff, ranks


def causal_head(b=2, h=3, n=14, d_h=4, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(b, h, n, d_h, generator=g, dtype=torch.float64)
    w_out = torch.randn(h, d_h, d, generator=g, dtype=torch.float64)
    scores = torch.randn(b, h, n, n, generator=g, dtype=torch.float64)
    return values, w_out, scores


@pytest.mark.parametrize("short", [9, 3])  # d_h = 4: both sequences have rows past d_h, or only the first
def test_causal_rows_project_onto_their_prefix(short):
    values, w_out, scores = causal_head()
    lengths = torch.tensor([14, short])
    values[1, :, short:] = 0
    allowed = pair_mask(lengths, 14, causal=True)
    a = torch.softmax(scores.masked_fill(~allowed.unsqueeze(1), float("-inf")), -1).nan_to_num() * allowed.unsqueeze(1)
    proj = project_attention(a, values, w_out, allowed)
    t = value_output_matrix(values, w_out)
    # the head's output is unchanged, row by row, and no row moves weight onto future keys
    assert ((proj.effective @ t - a @ t).norm() / (a @ t).norm()).item() < 1e-10
    assert proj.effective.masked_fill(allowed.unsqueeze(1), 0).abs().max() == 0
    # row i has (i + 1) - min(i + 1, d_h) null directions (random values have full rank)
    for b, n in enumerate(lengths.tolist()):
        rows = torch.arange(n)
        expected = (rows + 1) - (rows + 1).clamp(max=4)
        for h in range(3):
            assert (proj.context[b, :n] - proj.row_rank[b, h, :n]).tolist() == expected.tolist()
            ref_eff, ref_rank = slow_row_projection(a[b, h, :n, :n], t[b, h, :n], allowed[b, :n, :n])
            assert proj.row_rank[b, h, :n].tolist() == ref_rank
            torch.testing.assert_close(proj.effective[b, h, :n, :n], ref_eff, atol=1e-10, rtol=0)
    deficiency = rank_deficiency(proj.row_rank, proj.context, lengths)
    assert deficiency.null_dim.tolist() == [[10] * 3, [max(0, short - 4)] * 3]  # n - d_h, the last row's prefix
    mean_fraction = [sum(max(0, i + 1 - 4) / (i + 1) for i in range(n)) / n for n in (14, short)]
    torch.testing.assert_close(deficiency.row_null_fraction, torch.tensor(mean_fraction, dtype=torch.float64).view(2, 1).expand(2, 3))


def test_a_repeat_right_after_d_h_distinct_tokens_is_projected_once():
    # first layer of a rotary decoder, d_h = 4: tokens 0..3 fill the head, rows 4 and 5 repeat earlier
    # tokens (still 4 distinct rows: the group average) and later rows bring new ones (the running
    # inverse); a row is both only in name and must not get both projections added
    g = torch.Generator().manual_seed(3)
    tokens = torch.tensor([[0, 1, 2, 3, 0, 1, 4, 2, 5, 0]])
    table = torch.randn(2, 6, 4, generator=g, dtype=torch.float64)
    values = torch.stack([table[h][tokens] for h in range(2)], dim=1)
    w_out = torch.randn(2, 4, 9, generator=g, dtype=torch.float64)
    allowed = pair_mask(torch.tensor([10]), 10, causal=True)
    scores = torch.randn(1, 2, 10, 10, generator=g, dtype=torch.float64)
    a = torch.softmax(scores.masked_fill(~allowed.unsqueeze(1), float("-inf")), -1) * allowed.unsqueeze(1)
    proj = project_attention(a, values, w_out, allowed)
    t = value_output_matrix(values, w_out)
    for h in range(2):
        ref_eff, ref_rank = slow_row_projection(a[0, h], t[0, h], allowed[0])
        assert proj.row_rank[0, h].tolist() == ref_rank == [1, 2, 3, 4, 4, 4, 4, 4, 4, 4]
        torch.testing.assert_close(proj.effective[0, h], ref_eff, atol=1e-10, rtol=0)


def test_full_rank_rows_of_a_badly_conditioned_head_get_a_qr_each(monkeypatch):
    # one value row 1e5 times the others (an attention sink): the first d_h rows still have full rank
    # but are conditioned far worse than 1e4 against ||T||_F, so rows past d_h whose prefix is that
    # badly conditioned get a QR of their own prefix (no SVD) and must agree with the row-by-row SVD
    # reference
    values, w_out, scores = causal_head()
    values[:, :, 0] *= 1e5
    lengths = torch.tensor([14, 14])
    allowed = pair_mask(lengths, 14, causal=True)
    a = torch.softmax(scores.masked_fill(~allowed.unsqueeze(1), float("-inf")), -1) * allowed.unsqueeze(1)
    t = value_output_matrix(values, w_out)
    monkeypatch.setattr("idsuite.suite.null_space._rank_and_basis", lambda *args: pytest.fail("an SVD was taken"))
    proj = project_attention(a, values, w_out, allowed)
    monkeypatch.undo()
    for b in range(2):
        for h in range(3):
            ref_eff, ref_rank = slow_row_projection(a[b, h], t[b, h], allowed[b])
            assert proj.row_rank[b, h].tolist() == ref_rank == [min(i + 1, 4) for i in range(14)]
            torch.testing.assert_close(proj.effective[b, h], ref_eff, atol=1e-10, rtol=0)
    assert proj.effective.masked_fill(allowed.unsqueeze(1), 0).abs().max() == 0


def test_sliding_window_rows_use_only_their_window():
    values, w_out, scores = causal_head(b=1, h=2, n=12, d_h=3, d=8, seed=3)
    lengths = torch.tensor([12])
    allowed = pair_mask(lengths, 12, causal=True, window=5)
    a = torch.softmax(scores.masked_fill(~allowed.unsqueeze(1), float("-inf")), -1)
    proj = project_attention(a, values, w_out, allowed)
    t = value_output_matrix(values, w_out)
    assert proj.context[0].tolist() == [1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 5, 5]
    for h in range(2):
        ref_eff, ref_rank = slow_row_projection(a[0, h], t[0, h], allowed[0])
        assert proj.row_rank[0, h].tolist() == ref_rank == [1, 2, 3] + [3] * 9
        torch.testing.assert_close(proj.effective[0, h], ref_eff, atol=1e-10, rtol=0)
    assert ((proj.effective @ t - a @ t).norm() / (a @ t).norm()).item() < 1e-10
    assert rank_deficiency(proj.row_rank, proj.context, lengths).null_dim.tolist() == [[2, 2]]


@pytest.mark.parametrize("short", [7, 3])  # d_h = 4: both sequences have a null space, or only the first
def test_shared_context_equals_per_row_computation_for_encoders(short):
    values, w_out, scores = causal_head(b=2, h=2, n=10, d_h=4, d=9, seed=5)
    lengths = torch.tensor([10, short])
    values[1, :, short:] = 0
    allowed = pair_mask(lengths, 10, causal=False)
    a = torch.softmax(scores, -1) * allowed.unsqueeze(1)
    fast = project_attention(a, values, w_out, allowed, shared_context=True)
    slow = project_attention(a, values, w_out, allowed, shared_context=False)
    torch.testing.assert_close(fast.effective, slow.effective, atol=1e-10, rtol=0)
    assert torch.equal(fast.row_rank, slow.row_rank)


def test_repeated_values_in_a_short_prefix_are_found_row_by_row():
    # a rotary decoder's first layer gives a repeated token the same values: row 2 repeats row 1
    values, w_out, scores = causal_head(b=1, h=2, n=6, d_h=8, d=12, seed=7)
    values[0, 0, 2] = values[0, 0, 1]
    lengths = torch.tensor([6])
    allowed = pair_mask(lengths, 6, causal=True)
    a = torch.softmax(scores.masked_fill(~allowed.unsqueeze(1), float("-inf")), -1)
    proj = project_attention(a, values, w_out, allowed)
    t = value_output_matrix(values, w_out)
    assert (proj.context[0] - proj.row_rank[0, 0]).tolist() == [0, 0, 1, 1, 1, 1]
    assert (proj.context[0] - proj.row_rank[0, 1]).tolist() == [0] * 6
    torch.testing.assert_close(proj.effective[0, 1], a[0, 1])  # no null space: attention unchanged
    for h in range(2):
        ref_eff, ref_rank = slow_row_projection(a[0, h], t[0, h], allowed[0])
        assert proj.row_rank[0, h].tolist() == ref_rank
        torch.testing.assert_close(proj.effective[0, h], ref_eff, atol=1e-10, rtol=0)


def with_singular_values(s, n, seed=0):
    """An (n x k) float64 matrix with the given singular values (k = len(s)) and random singular vectors."""
    g = torch.Generator().manual_seed(seed)
    k = len(s)
    u = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64)).Q
    v = torch.linalg.qr(torch.randn(k, k, generator=g, dtype=torch.float64)).Q
    return (u * torch.tensor(s, dtype=torch.float64)) @ v.T


def test_cholesky_certificate_never_certifies_a_rank_the_svd_denies():
    # sigma_min / sigma_max swept from 1e-1 down to 1e-17 (far below the float64 tolerance)
    from idsuite.suite.null_space import CONDITION_LIMIT, _certified_cholesky

    ratios = [10.0**-e for e in range(1, 18)]
    m = torch.stack([with_singular_values([1.0] * 7 + [r], 40, seed=i) for i, r in enumerate(ratios)])
    gram = m.mT @ m
    trace = gram.diagonal(dim1=-2, dim2=-1).sum(-1)
    _, rank_ok, qr_ok = _certified_cholesky(gram, trace, torch.tensor(40), 8, torch.float64, (64 * EPS64) ** 2 * trace)
    s = torch.linalg.svdvals(m)
    full_rank = s[:, -1] > s[:, 0] * 64 * EPS64
    assert (full_rank | ~rank_ok).all()  # certified implies full rank
    assert rank_ok[:6].all()  # down to sigma_min ~ 1e-6: a float64 Gram resolves about sqrt(eps)
    # the conditioning for Cholesky QR: every head within the limit, in float64
    assert qr_ok.tolist() == [r * (8**-0.5) > 1 / CONDITION_LIMIT for r in ratios]


def test_uncertified_heads_get_the_svd_answer():
    # one sequence of n = 30 rows and k = 6 (tall) and one of n = 4 (short), heads from
    # well conditioned to rank-deficient (the last through W_O); every rank and projector must
    # match a direct SVD of T
    k, d = 6, 16
    spectra = [[1.0] * 6, [1.0] * 5 + [1e-9], [1.0] * 5 + [1e-15], [1.0] * 3 + [0.0] * 3, [1.0] * 6]
    values = torch.zeros(2, len(spectra), 30, k, dtype=torch.float64)
    for h, s in enumerate(spectra):
        values[0, h] = with_singular_values(s, 30, seed=h)
        values[1, h, :4] = with_singular_values(s, 6, seed=10 + h)[:4]
    values[1, 3, 3] = values[1, 3, 2]  # a repeated row in the short sequence
    rows = torch.linalg.qr(torch.randn(d, k, dtype=torch.float64)).Q.T  # orthonormal rows
    w_out = rows.repeat(len(spectra), 1, 1)
    w_out[-1] = torch.tensor([1.0] * 5 + [1e-15], dtype=torch.float64).view(-1, 1) * rows
    lengths = torch.tensor([30, 4])
    space = column_space(values, w_out, lengths)
    t = value_output_matrix(values, w_out)
    for b, n in enumerate(lengths.tolist()):
        for h in range(len(spectra)):
            u, s, _ = torch.linalg.svd(t[b, h, :n], full_matrices=False)
            r = int((s > s[0] * max(n, d) * EPS64).sum())
            assert space.rank[b, h].item() == r, (b, h)
            basis = space.basis[b, h, :n, :r]
            # col(T) moves by ~ rounding / sigma_r under rounding of T: tolerance follows sigma_r
            atol = 1e-12 + 1e-14 * (s[0] / s[r - 1]).item()
            torch.testing.assert_close(basis @ basis.T, u[:, :r] @ u[:, :r].T, atol=atol, rtol=0)
    assert space.rank[0].tolist() == [6, 6, 5, 3, 5] and space.rank[1].tolist() == [4, 4, 4, 3, 4]


def test_repeated_tokens_of_a_long_sequence_match_the_row_by_row_reference():
    # a first decoder layer: values depend on the token only, 20 tokens drawn from 7 -> prefixes
    # with at most d_h = 5 distinct tokens average each token's attention, longer ones project
    g = torch.Generator().manual_seed(11)
    tokens = torch.randint(0, 7, (2, 20), generator=g)
    table = torch.randn(3, 7, 5, generator=g, dtype=torch.float64)  # (H, vocab, d_h)
    values = torch.stack([table[h][tokens] for h in range(3)], dim=1)  # (B, H, N, d_h)
    lengths = torch.tensor([20, 13])
    values[1, :, 13:] = 0
    w_out = torch.randn(3, 5, 9, generator=g, dtype=torch.float64)
    allowed = pair_mask(lengths, 20, causal=True)
    scores = torch.randn(2, 3, 20, 20, generator=g, dtype=torch.float64)
    a = torch.softmax(scores.masked_fill(~allowed.unsqueeze(1), float("-inf")), -1).nan_to_num() * allowed.unsqueeze(1)
    proj = project_attention(a, values, w_out, allowed)
    t = value_output_matrix(values, w_out)
    for b, n in enumerate(lengths.tolist()):
        distinct = torch.tensor([len(set(tokens[b, : i + 1].tolist())) for i in range(n)])
        for h in range(3):
            ref_eff, ref_rank = slow_row_projection(a[b, h, :n, :n], t[b, h, :n], allowed[b, :n, :n])
            assert proj.row_rank[b, h, :n].tolist() == ref_rank == distinct.clamp(max=5).tolist()
            torch.testing.assert_close(proj.effective[b, h, :n, :n], ref_eff, atol=1e-10, rtol=0)
    assert ((proj.effective @ t - a @ t).norm() / (a @ t).norm()).item() < 1e-10


def rotary_first_layer(tokens, h, d_h, d, seed):
    """Values that depend on the token only (a rotary decoder's first layer), a random W_O and
    causal attention: (values, w_out, attention, allowed) for token ids (B, N), all rows valid."""
    g = torch.Generator().manual_seed(seed)
    b, n = tokens.shape
    table = torch.randn(h, int(tokens.max()) + 1, d_h, generator=g, dtype=torch.float64)
    values = torch.stack([table[i][tokens] for i in range(h)], dim=1)
    w_out = torch.randn(h, d_h, d, generator=g, dtype=torch.float64)
    allowed = pair_mask(torch.full((b,), n), n, causal=True)
    scores = torch.randn(b, h, n, n, generator=g, dtype=torch.float64)
    a = torch.softmax(scores.masked_fill(~allowed.unsqueeze(1), float("-inf")), -1) * allowed.unsqueeze(1)
    return values, w_out, a, allowed


def no_row_decompositions(monkeypatch):
    fail = lambda *args: pytest.fail("a row took its own decomposition")  # noqa: E731
    monkeypatch.setattr("idsuite.suite.null_space._project_each_row", lambda inputs, rows, *args: fail() if len(rows) else None)


def assert_matches_reference(proj, a, values, w_out, allowed, lengths, atol=1e-10):
    t = value_output_matrix(values, w_out)
    for b, n in enumerate(lengths):
        for h in range(a.shape[1]):
            ref_eff, ref_rank = slow_row_projection(a[b, h, :n, :n], t[b, h, :n], allowed[b, :n, :n])
            assert proj.row_rank[b, h, :n].tolist() == ref_rank, (b, h)
            torch.testing.assert_close(proj.effective[b, h, :n, :n], ref_eff, atol=atol, rtol=0)


def test_repeats_among_the_first_d_h_rows_then_saturation_need_no_row_decomposition(monkeypatch):
    # the case that took an SVD per row: a token repeated before d_h distinct ones were seen, then
    # more distinct tokens than d_h = 4 (rank 4 from the seventh distinct row on), over several
    # blocks of the recursion (n = 150 > 2 * PREFIX_BLOCK), each head starting its recursion elsewhere
    g = torch.Generator().manual_seed(5)
    tokens = torch.randint(0, 9, (2, 150), generator=g)
    tokens[0, :6] = torch.tensor([0, 0, 1, 0, 2, 1])
    tokens[1, :3] = torch.tensor([4, 4, 4])
    values, w_out, a, allowed = rotary_first_layer(tokens, h=3, d_h=4, d=10, seed=1)
    no_row_decompositions(monkeypatch)
    proj = project_attention(a, values, w_out, allowed)
    monkeypatch.undo()
    for b in range(2):
        distinct = torch.tensor([len(set(tokens[b, : i + 1].tolist())) for i in range(150)])
        assert proj.row_rank[b].tolist() == [distinct.clamp(max=4).tolist()] * 3
    assert_matches_reference(proj, a, values, w_out, allowed, [150, 150])
    t = value_output_matrix(values, w_out)
    assert ((proj.effective @ t - a @ t).norm() / (a @ t).norm()).item() < 1e-10


def test_generic_long_heads_match_the_reference_without_row_decompositions(monkeypatch):
    # later layers: every value row distinct; n = 200 over d_h = 8, one padded sequence
    values, w_out, scores = causal_head(b=2, h=2, n=200, d_h=8, d=16, seed=9)
    lengths = torch.tensor([200, 77])
    values[1, :, 77:] = 0
    allowed = pair_mask(lengths, 200, causal=True)
    a = torch.softmax(scores.masked_fill(~allowed.unsqueeze(1), float("-inf")), -1).nan_to_num() * allowed.unsqueeze(1)
    no_row_decompositions(monkeypatch)
    proj = project_attention(a, values, w_out, allowed)
    monkeypatch.undo()
    assert_matches_reference(proj, a, values, w_out, allowed, [200, 77])


def test_exact_dependencies_that_are_not_repeats_fall_back_to_the_reference():
    # row 3 = row 0 + row 1 (no two rows equal): the first d_h distinct rows are dependent, so the
    # head is not certified and its rows get the per-row SVD; ranks stall at 3 then reach d_h = 4
    values, w_out, scores = causal_head(b=1, h=2, n=12, d_h=4, d=9, seed=2)
    values[0, 0, 3] = values[0, 0, 0] + values[0, 0, 1]
    allowed = pair_mask(torch.tensor([12]), 12, causal=True)
    a = torch.softmax(scores.masked_fill(~allowed.unsqueeze(1), float("-inf")), -1)
    proj = project_attention(a, values, w_out, allowed)
    assert proj.row_rank[0, 0].tolist() == [1, 2, 3, 3] + [4] * 8
    assert_matches_reference(proj, a, values, w_out, allowed, [12])


@pytest.mark.parametrize("scale", [1e3, 1e-3])  # sigma_min 1000x above, and 1000x below, the tolerance
def test_near_tolerance_rows_are_decided_as_the_reference_decides(scale):
    # the fourth distinct row is the sum of two earlier rows plus a perturbation of a chosen size
    # against the rank tolerance ||T||_F max(n, d) eps: above, rank 4; below, rank 3
    n, d_h, d = 40, 4, 8
    g = torch.Generator().manual_seed(4)
    rows = torch.linalg.qr(torch.randn(d_h, d_h, generator=g, dtype=torch.float64)).Q  # orthonormal
    tokens = torch.randint(0, 4, (1, n), generator=g)
    tokens[0, :4] = torch.tensor([0, 1, 2, 3])
    table = rows.clone()
    direction = rows[3]
    table[3] = rows[0] + rows[1]
    w_out = torch.linalg.qr(torch.randn(d, d_h, generator=g, dtype=torch.float64)).Q.T.unsqueeze(0)  # orthonormal rows
    frobenius = (table[tokens[0]]).norm()
    table[3] += scale * float(frobenius * max(n, d) * EPS64) * direction
    values = table[tokens].unsqueeze(1)  # (1, 1, n, d_h)
    allowed = pair_mask(torch.tensor([n]), n, causal=True)
    scores = torch.randn(1, 1, n, n, generator=g, dtype=torch.float64)
    a = torch.softmax(scores.masked_fill(~allowed.unsqueeze(1), float("-inf")), -1)
    proj = project_attention(a, values, w_out, allowed)
    t = value_output_matrix(values, w_out)
    _, ref_rank = slow_row_projection(a[0, 0], t[0, 0], allowed[0])
    assert proj.row_rank[0, 0].tolist() == ref_rank
    assert ref_rank[-1] == (4 if scale > 1 else 3)
    if scale < 1:  # below the tolerance the projection is well defined and must agree
        assert_matches_reference(proj, a, values, w_out, allowed, [n], atol=1e-8)


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(
    tokens=st.lists(st.integers(0, 11), min_size=1, max_size=90),
    d_h=st.integers(1, 9),
    window=st.one_of(st.none(), st.integers(2, 30)),
    seed=st.integers(0, 2**16),
)
def test_every_decision_equals_the_per_row_reference(tokens, d_h, window, seed):
    # random repeats (first decoder layers), any head size, with and without a sliding window
    ids = torch.tensor([tokens])
    values, w_out, a, _ = rotary_first_layer(ids, h=2, d_h=d_h, d=d_h + 3, seed=seed)
    n = len(tokens)
    allowed = pair_mask(torch.tensor([n]), n, causal=True, window=window)
    a = a * allowed.unsqueeze(1)
    fast = project_attention(a, values, w_out, allowed)
    slow = project_attention_by_row(a, values, w_out, allowed)
    assert torch.equal(fast.row_rank, slow.row_rank)
    torch.testing.assert_close(fast.effective, slow.effective, atol=1e-8, rtol=0)


def test_a_token_repeated_many_times_joins_its_first_occurrence():
    # token 0 seven times among three distinct tokens: each repeat must be grouped with position 0
    # (resolving "an earlier equal row" by two pointer jumps left the sixth repeat in another group)
    tokens = torch.tensor([[0, 1, 0, 2, 0, 0, 1, 0, 0, 0, 2, 0]])
    values, w_out, a, allowed = rotary_first_layer(tokens, h=2, d_h=4, d=7, seed=6)
    groups = duplicate_rows(reduced_values(values, w_out, torch.float64), torch.ones(1, 12, dtype=torch.bool))
    assert groups.first[0, 0].tolist() == [0, 1, 0, 3, 0, 0, 1, 0, 0, 0, 3, 0]
    assert groups.group[0, 1].tolist() == [0, 1, 0, 2, 0, 0, 1, 0, 0, 0, 2, 0]
    proj = project_attention(a, values, w_out, allowed)
    assert_matches_reference(proj, a, values, w_out, allowed, [12])


@pytest.mark.parametrize("causal", [True, False])
def test_blocks_of_heads_and_sequences_give_the_same_projection(monkeypatch, causal):
    # a budget of one head of one sequence, then of two heads of one sequence, against all at once
    g = torch.Generator().manual_seed(8)
    tokens = torch.randint(0, 6, (3, 20), generator=g)
    values, w_out, a, _ = rotary_first_layer(tokens, h=3, d_h=4, d=9, seed=8)
    lengths = torch.tensor([20, 13, 5])
    values = values * (torch.arange(20) < lengths.view(-1, 1)).view(3, 1, 20, 1)
    allowed = pair_mask(lengths, 20, causal=causal)
    a = a * allowed.unsqueeze(1)
    whole = project_attention(a, values, w_out, allowed, shared_context=not causal)
    for budget in (400, 800):
        monkeypatch.setattr("idsuite.suite.null_space.MAX_BLOCK_ELEMENTS", budget)
        blocks = project_attention(a, values, w_out, allowed, shared_context=not causal)
        assert torch.equal(blocks.row_rank, whole.row_rank) and torch.equal(blocks.attention, whole.attention)
        torch.testing.assert_close(blocks.effective, whole.effective, atol=1e-12, rtol=0)


@pytest.mark.parametrize("scale", [1e-6, 1e-9, 1e-11])
def test_a_head_too_badly_conditioned_for_the_recursion_falls_back_without_breaking_the_others(scale):
    # the first d_h value rows of head 0 are tiny against the later ones (certified independent, but
    # C at the first row of rank d_h is hopeless): its rows must get their own QR, head 1 the recursion
    g = torch.Generator().manual_seed(0)
    n, k = 30, 2
    values = torch.randn(1, 2, n, k, generator=g, dtype=torch.float64)
    values[:, 0, :k] *= scale
    w_out = torch.randn(2, k, k + 3, generator=g, dtype=torch.float64)
    allowed = pair_mask(torch.tensor([n]), n, causal=True)
    scores = torch.randn(1, 2, n, n, generator=g, dtype=torch.float64)
    a = torch.softmax(scores.masked_fill(~allowed.unsqueeze(1), float("-inf")), -1)
    proj = project_attention(a, values, w_out, allowed)
    t = value_output_matrix(values, w_out)
    for h, atol in ((0, 1e-14 / scale), (1, 1e-10)):  # head 0: the projection itself moves by ~ eps / scale
        ref_eff, ref_rank = slow_row_projection(a[0, h], t[0, h], allowed[0])
        assert proj.row_rank[0, h].tolist() == ref_rank
        torch.testing.assert_close(proj.effective[0, h], ref_eff, atol=atol, rtol=0)


def test_float32_compute_keeps_the_recursion_in_float64():
    # float32 ranks (the GPU setting): the recursion past d_h must be as accurate as a float32 SVD per
    # row, not cond(C) * float32 eps off
    values, w_out, scores = causal_head(b=1, h=2, n=120, d_h=8, d=16, seed=2)
    values[:, :, :8] *= 1e-2
    allowed = pair_mask(torch.tensor([120]), 120, causal=True)
    a = torch.softmax(scores.masked_fill(~allowed.unsqueeze(1), float("-inf")), -1)
    reference = project_attention_by_row(a, values, w_out, allowed, torch.float64)
    fast = project_attention(a.float(), values.float(), w_out.float(), allowed, torch.float32)
    assert torch.equal(fast.row_rank, reference.row_rank)
    assert (fast.effective.double() - reference.effective).abs().max() < 1e-5
