"""Token identifiability: exact recoveries on constructed data, MLP maps that converge to a known
exact solution, and the scoring rule itself."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from idsuite.suite.masks import token_mask
from idsuite.suite.token_identifiability import (
    fit_linear,
    fit_mlps,
    fit_naive,
    identified,
    identified_per_sequence,
    length_chunks,
    nearest_order,
)


def make_sequences(s=12, n=9, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(s, n, d, generator=g)
    lengths = torch.randint(3, n + 1, (s,), generator=g)
    valid = token_mask(lengths, n)
    x = x * valid.unsqueeze(-1)
    ids = torch.arange(s * n).view(s, n)  # every token distinct
    return x, ids, valid


def rate(mapping, hidden, x, ids, valid, distance):
    """Identifiability of padded (S, N, d) sequences, their tokens laid end to end as the metric does."""
    hits, counts = identified_per_sequence(mapping(hidden[valid]), x[valid], ids[valid], valid.sum(-1), distance)
    return (hits.sum() / counts.sum()).item()


def test_naive_cosine_at_embedding_layer_is_one():
    x, ids, valid = make_sequences()
    g = fit_naive(x[valid], x[valid])
    assert rate(g, x, x, ids, valid, "cosine") == 1.0 and rate(g, x, x, ids, valid, "l2") == 1.0
    hits, counts = identified_per_sequence(x[valid], x[valid], ids[valid], valid.sum(-1), "l2")
    assert torch.equal(hits, counts) and torch.equal(counts, valid.sum(-1))  # per sequence


def test_linear_map_of_inputs_is_identified_by_linear_g():
    x, ids, valid = make_sequences(d=16)
    g = torch.Generator().manual_seed(3)
    m = torch.randn(16, 16, generator=g)
    hidden = (x @ m + torch.randn(16, generator=g)) * valid.unsqueeze(-1)  # e = x M + b, exactly
    train, test = slice(0, 8), slice(8, 12)
    mapping = fit_linear(hidden[train][valid[train]], x[train][valid[train]])
    for distance in ("cosine", "l2"):
        assert rate(mapping, hidden[test], x[test], ids[test], valid[test], distance) == 1.0
    assert rate(fit_naive(hidden, x), hidden[test], x[test], ids[test], valid[test], "l2") < 1.0  # M is not undone


def exact_mlp_problem(tokens=1200, d=8, width=6, seed=0):
    """Targets ``x = relu(e A + a) B + b`` that a one-hidden-layer MLP represents exactly."""
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(tokens, d, generator=g)
    a, b1 = torch.randn(d, width, generator=g), torch.randn(width, generator=g)
    b, b2 = torch.randn(width, d, generator=g), torch.randn(d, generator=g)
    return e, torch.relu(e @ a + b1) @ b + b2


def test_batched_mlp_maps_converge_to_a_known_exact_solution():
    e, x = exact_mlp_problem()
    hidden = torch.stack([e, e, x])  # maps 0-1: from e (the exact MLP), map 2: from x itself
    heldout = torch.arange(len(e)) >= 1000
    fit = dict(seed=1, width=64, lr=1e-2, max_epochs=300, tolerance=1e-3)
    maps, fits = fit_mlps(hidden, x, ["l2", "cosine", "l2"], heldout, **fit)
    assert fits.converged.all() and (fits.epochs < 300).all()
    initial = x[heldout].var(0).sum()  # the loss of predicting the mean
    assert fits.heldout_loss[0] < 0.02 * initial and fits.heldout_loss[2] < 0.02 * initial
    assert fits.heldout_loss[1] < 0.01  # 1 - cos
    ids = torch.arange(200).view(20, 10)
    valid = torch.ones(20, 10, dtype=torch.bool)
    test_e, test_x = e[heldout].view(20, 10, -1), x[heldout].view(20, 10, -1)
    assert rate(maps[0], test_e, test_x, ids, valid, "l2") == 1.0
    assert rate(maps[1], test_e, test_x, ids, valid, "cosine") == 1.0
    again = fit_mlps(hidden, x, ["l2", "cosine", "l2"], heldout, **fit)[0][0]
    torch.testing.assert_close(maps[0](e[:5]), again(e[:5]))  # seeded


def test_maps_of_either_distance_in_any_order_come_back_in_the_callers_order():
    """Inside, cosine maps train first (their losses are slices); every result is handed back in the
    order asked for: map k fits ``hidden[k]`` with ``distances[k]``'s loss."""
    e, x = exact_mlp_problem(seed=6)
    g = torch.Generator().manual_seed(6)
    rotations = [torch.linalg.qr(torch.randn(8, 8, generator=g)).Q for _ in range(4)]
    hidden = torch.stack([e @ r for r in rotations])  # four different inputs, one target
    heldout = torch.arange(len(e)) >= 1000
    distances = ["l2", "cosine", "l2", "cosine"]
    maps, fits = fit_mlps(hidden, x, distances, heldout, seed=0, width=64, lr=1e-2, max_epochs=200, tolerance=1e-3)
    initial = x[heldout].var(0).sum()
    for k, distance in enumerate(distances):
        own = maps[k](hidden[k][heldout])
        other = maps[k](hidden[(k + 1) % 4][heldout])  # another map's inputs: a rotation it never saw
        if distance == "l2":
            assert fits.heldout_loss[k] < 0.05 * initial < (other - x[heldout]).square().sum(-1).mean()
            torch.testing.assert_close((own - x[heldout]).square().sum(-1).mean(), fits.heldout_loss[k], rtol=1e-3, atol=1e-3)
        else:
            cos = torch.nn.functional.cosine_similarity
            assert fits.heldout_loss[k] < 0.02 < 1 - cos(other, x[heldout], dim=-1).mean()
            torch.testing.assert_close(1 - cos(own, x[heldout], dim=-1).mean(), fits.heldout_loss[k], rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="held-out tokens"):
        fit_mlps(hidden, x, distances, torch.zeros(len(e), dtype=torch.bool), seed=0, width=8)


def test_a_map_stopped_by_the_epoch_cap_is_not_converged_and_keeps_its_best_weights():
    e, x = exact_mlp_problem(seed=2)
    heldout = torch.arange(len(e)) >= 1000
    maps, fits = fit_mlps(e.unsqueeze(0), x, ["l2"], heldout, seed=0, width=64, lr=1e-2, max_epochs=3, patience=5)
    assert not fits.converged.any() and fits.epochs.tolist() == [3]
    held = ((maps[0](e[heldout]) - x[heldout]).square().sum(-1).mean())
    torch.testing.assert_close(held, fits.heldout_loss[0], rtol=1e-2, atol=1e-4)  # the kept weights are the best seen


def test_improvements_below_the_tolerance_are_kept_though_they_do_not_postpone_convergence():
    """The tolerance decides only when a map has converged: the weights kept are those of the
    lowest held-out loss seen. Within 3 epochs (patience 5) no map stops, so both tolerances train
    the same trajectory and must keep the same weights."""
    e, x = exact_mlp_problem(seed=2)
    heldout = torch.arange(len(e)) >= 1000
    fit = dict(seed=0, width=64, lr=1e-2, max_epochs=3, patience=5)
    strict, fits = fit_mlps(e.unsqueeze(0), x, ["l2"], heldout, tolerance=0.0, **fit)
    loose, loose_fits = fit_mlps(e.unsqueeze(0), x, ["l2"], heldout, tolerance=0.6, **fit)
    _, start = fit_mlps(e.unsqueeze(0), x, ["l2"], heldout, seed=0, width=64, lr=1e-12, max_epochs=1)
    assert fits.heldout_loss[0] < 0.9 * start.heldout_loss[0]  # training improved on the start ...
    torch.testing.assert_close(loose_fits.heldout_loss, fits.heldout_loss)  # ... and the loose fit kept it
    torch.testing.assert_close(loose[0](e[heldout]), strict[0](e[heldout]))


def test_a_map_that_training_only_worsens_keeps_its_least_squares_start():
    """Early stopping includes the start: with a step size that wrecks the map, the held-out loss
    never improves, the map stops after ``patience`` epochs and keeps the least-squares output layer."""
    e, x = exact_mlp_problem(seed=4)
    heldout = torch.arange(len(e)) >= 1000
    maps, fits = fit_mlps(e.unsqueeze(0), x, ["l2"], heldout, seed=0, width=64, lr=10.0, patience=2)
    assert fits.converged.tolist() == [True] and fits.epochs.tolist() == [2]
    _, start = fit_mlps(e.unsqueeze(0), x, ["l2"], heldout, seed=0, width=64, lr=1e-12, max_epochs=1)
    torch.testing.assert_close(fits.heldout_loss, start.heldout_loss)  # lr ~ 0: the loss of the start itself
    held = ((maps[0](e[heldout]) - x[heldout]).square().sum(-1).mean())
    torch.testing.assert_close(held, fits.heldout_loss[0], rtol=1e-4, atol=1e-4)


def test_the_least_squares_start_survives_an_explicit_thread_count():
    """MKL's batched LU (``torch.linalg.solve`` on a stack of matrices of order 160 or more) fails in a
    process that called ``torch.set_num_threads(n > 1)`` before its first batched solve, in some builds
    (torch 2.13's CPU wheel here); the start's symmetric positive definite system (201 x 201 here) is
    solved by Cholesky instead. A fresh process, so that no earlier solve has initialised MKL."""
    script = textwrap.dedent("""
        import torch
        torch.set_num_threads(2)
        from idsuite.suite.token_identifiability import fit_mlps
        e = torch.randn(600, 8, generator=torch.Generator().manual_seed(0))
        _, fits = fit_mlps(torch.stack([e, e]), e, ["l2", "cosine"], torch.arange(600) >= 500, seed=0, width=200,
                           max_epochs=2)
        assert torch.isfinite(fits.heldout_loss).all() and fits.epochs.tolist() == [2, 2]
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]


def test_bfloat16_products_give_the_same_maps_to_bfloat16_accuracy():
    e, x = exact_mlp_problem(seed=3)
    heldout = torch.arange(len(e)) >= 1000
    _, full = fit_mlps(e.unsqueeze(0), x, ["l2"], heldout, seed=0, width=64, lr=1e-2, max_epochs=100)
    _, half = fit_mlps(e.unsqueeze(0), x, ["l2"], heldout, seed=0, width=64, lr=1e-2, max_epochs=100,
                       precision="bfloat16")
    initial = x[heldout].var(0).sum()
    assert half.heldout_loss[0] < 0.05 * initial and abs(half.heldout_loss[0] - full.heldout_loss[0]) < 0.02 * initial


def test_repeated_token_counts_when_nearest_has_same_id_and_padding_is_never_nearest():
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.0, 0.0]]])
    ids = torch.tensor([[7, 8, 7, 0]])
    valid = torch.tensor([[True, True, True, False]])
    pred = torch.tensor([[[0.95, 0.05], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]])  # token 2 lands nearest token 0
    hits = identified(pred, x, ids, valid, "l2")
    assert hits.tolist() == [[True, True, True, False]]
    ids_distinct = torch.tensor([[7, 8, 9, 0]])
    assert identified(pred, x, ids_distinct, valid, "cosine").tolist() == [[True, True, False, False]]


def test_nearest_order_ranks_as_the_distances_do():
    """The scores that pick the nearest input order every row as ``torch.cdist`` and the cosine
    distance computed directly do."""
    g = torch.Generator().manual_seed(7)
    pred, targets = torch.randn(5, 11, 16, generator=g) * 3, torch.randn(5, 11, 16, generator=g) * 3
    l2 = torch.cdist(pred.double(), targets.double())
    cosine = 1 - torch.nn.functional.cosine_similarity(pred.double().unsqueeze(2), targets.double().unsqueeze(1), dim=-1)
    for distance, reference in (("l2", l2), ("cosine", cosine)):
        assert torch.equal(nearest_order(pred, targets, distance).argsort(-1), reference.argsort(-1))


@pytest.mark.parametrize("max_elements", [1, 200, 1 << 22])
def test_length_chunks_give_what_one_padded_batch_gives(max_elements):
    """Scoring in chunks of similar length (one sequence per chunk, a few, all) counts the same hits
    per sequence, in the caller's order, as ``identified`` on one padded batch of every sequence;
    every token lies in exactly one chunk; repeated ids and lengths 1 to 12 included."""
    g = torch.Generator().manual_seed(5)
    lengths = torch.tensor([12, 1, 5, 12, 3, 7, 2, 9, 5, 11])
    valid = token_mask(lengths, 12)
    x = torch.randn(10, 12, 6, generator=g) * valid.unsqueeze(-1)
    pred = x + 0.8 * torch.randn(10, 12, 6, generator=g)  # noisy: some tokens are missed
    ids = torch.randint(0, 20, (10, 12), generator=g) * valid  # repeats within a sequence
    chunks = length_chunks(lengths, max_elements)
    assert sorted(torch.cat([i[v] for _, i, v in chunks]).tolist()) == list(range(int(lengths.sum())))
    assert sorted(torch.cat([w for w, _, _ in chunks]).tolist()) == list(range(10))
    for distance in ("l2", "cosine"):
        reference = torch.tensor([brute_force_hits(pred[s, :n], x[s, :n], ids[s, :n], distance)
                                  for s, n in enumerate(lengths.tolist())])
        assert torch.equal(identified(pred, x, ids, valid, distance).sum(-1), reference)
        hits, counts = identified_per_sequence(pred[valid], x[valid], ids[valid], lengths, distance, max_elements)
        assert torch.equal(hits, reference) and torch.equal(counts, lengths)
        assert 0 < hits.sum() < lengths.sum()  # the noise leaves both outcomes


def brute_force_hits(pred, x, ids, distance) -> int:
    """Identified tokens of one unpadded sequence from the distances themselves (``torch.cdist``, the
    cosine distance computed directly), token by token."""
    if distance == "l2":
        dist = torch.cdist(pred.double(), x.double())
    else:
        dist = 1 - torch.nn.functional.cosine_similarity(pred.double().unsqueeze(1), x.double().unsqueeze(0), dim=-1)
    nearest = dist.argmin(-1)
    return sum(int(j == i or ids[j] == ids[i]) for i, j in enumerate(nearest.tolist()))


def test_padding_is_never_nearest_even_when_it_holds_nan():
    """Padded candidates are out of every row whatever they hold (zeros, NaN, huge values)."""
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [float("nan"), 1e30]]])
    valid = torch.tensor([[True, True, False]])
    ids = torch.tensor([[3, 4, 5]])
    for distance in ("l2", "cosine"):
        assert identified(x.nan_to_num(0.0), x, ids, valid, distance).tolist() == [[True, True, False]]
