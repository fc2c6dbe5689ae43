"""Attribution and context mixing at any length: the attribution cap follows the head size d_h
(an explicit ``max_tokens`` wins), sequences left out are counted with why, a corpus with no
sequence short enough is a result rather than a failure, and exact block norms too costly for the
model's size fall back to the estimator, saying so; a cost budget ends the sample deterministically,
saying so."""

import math

import pytest
import torch
import transformers

from idsuite.runners.models.adapters import adapter_for
from idsuite.runners.probing.tracing import Tracer
from idsuite.suite.hidden_token_attribution import exact_or_estimate, sequence_flops
from idsuite.suite.metrics.context_mixing import ContextMixingMetric
from idsuite.suite.metrics.hidden_token_attribution import AttributionMetric
from idsuite.suite.specs.context_mixing import ContextMixingConfig
from idsuite.suite.specs.hidden_token_attribution import AttributionConfig
from idsuite.suite.specs.sample import CostBudget
from tests.conftest import VOCAB, WORDS

LENGTHS = [7, 12, 18, 25, 35, 45]
"""Tokens per probe sequence ([CLS] and [SEP] included): d_h = 8 gives a cap of 20 (three left out),
d_h = 16 a cap of 40 (one left out)."""


def sentence(tokens: int, offset: int = 0) -> str:
    words = [w for w in WORDS if w not in ".,!?"]
    return " ".join(words[(offset + i) % len(words)] for i in range(tokens - 2))


def tracer_with_heads(folder, heads: int) -> Tracer:
    """A tiny BERT (d = 32, two layers; ``tests/conftest.py``'s vocabulary) with ``heads`` heads, so
    d_h = 32 / heads."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = transformers.BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)}, do_lower_case=True)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_attention_heads=heads,
                                     num_hidden_layers=2, intermediate_size=64, max_position_embeddings=64)
    model = transformers.BertModel(config).eval()
    model.save_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    return Tracer(model, tokenizer, adapter_for("bert"))


@pytest.fixture(scope="module")
def tracers(tmp_path_factory) -> dict[int, Tracer]:
    """d_h -> a tracer of a tiny BERT with that head size."""
    root = tmp_path_factory.mktemp("heads")
    return {32 // heads: tracer_with_heads(root / f"h{heads}", heads) for heads in (4, 2)}


def fed(metric, tracer: Tracer, lengths: list[int]):
    """``metric`` updated with probe sequences of the given lengths (corpus order), in two batches."""
    tracer.encodings.clear()
    for i, n in enumerate(lengths):
        tracer.encodings[i] = dict(tracer.tokenizer(sentence(n, i)))
        assert len(tracer.encodings[i]["input_ids"]) == n
    ids = list(range(len(lengths)))
    for half in (ids[: len(ids) // 2], ids[len(ids) // 2 :]):
        metric.update(tracer.trace(half))
    return metric


def count(rows, variant: str) -> tuple[float, str]:
    row = rows[rows["variant"] == variant]
    assert len(row) == 1, variant
    return float(row["value"].iloc[0]), str(row["label"].iloc[0])


def attribute(tracer: Tracer, lengths: list[int], **config):
    metric = fed(AttributionMetric(AttributionConfig(min_sequences=2, max_sequences=4, probes=4, **config), seed=0),
                 tracer, lengths)
    return metric, metric.finish(tracer)


def test_the_attribution_cap_follows_the_head_size(tracers):
    for d_head, cap, skipped in ((8, 20, 3), (16, 40, 1)):
        metric, rows = attribute(tracers[d_head], LENGTHS)
        assert metric.d_head == d_head and metric.cap == cap == math.ceil(2.5 * d_head)
        value, label = count(rows, "skipped_sequences")
        assert value == skipped
        assert label == (f"{skipped} probe sequences left out for being longer than the cap of {cap} tokens "
                         f"(2.5 x d_h = {d_head}, rounded up); the shortest of them has {LENGTHS[-skipped]} tokens")
        value, label = count(rows, "attributed_sequences")
        assert label.startswith(f"{int(value)} of {len(LENGTHS) - skipped} eligible sequences of at most {cap} tokens "
                                f"(2.5 x d_h = {d_head}, rounded up): ")
        attributed = set(rows.loc[rows["variant"] == "own", "n_tokens"].dropna().astype(int))
        assert max(attributed) <= cap and min(attributed) <= d_head < max(attributed)  # the sample straddles d_h
    # another multiple of d_h
    metric, rows = attribute(tracers[8], LENGTHS, max_tokens_per_head_size=4.5)
    assert metric.cap == 36 and count(rows, "skipped_sequences")[0] == 1


def test_an_explicit_max_tokens_wins_over_the_head_size(tracers):
    for d_head in (8, 16):
        metric, rows = attribute(tracers[d_head], LENGTHS, max_tokens=12)
        assert metric.cap == 12
        value, label = count(rows, "skipped_sequences")
        assert value == 4 and "the cap of 12 tokens (max_tokens, set explicitly); the shortest of them has 18" in label
        assert set(rows.loc[rows["variant"] == "own", "n_tokens"].dropna().astype(int)) == {7, 12}
        straddles = "; none is longer than d_h, so the sample does not straddle the head size (the cap is not above d_h)"
        assert (straddles in count(rows, "attributed_sequences")[1]) == (d_head == 16)


def test_a_long_only_corpus_is_counted_not_failed(tracers):
    tracer = tracers[8]
    long_only = [22, 30, 41]
    _, rows = attribute(tracer, long_only)
    assert set(rows["variant"]) == {"attributed_sequences", "skipped_sequences"}
    value, label = count(rows, "attributed_sequences")
    assert value == 0 and label.startswith("no sequence attributed: none of the 3 probe sequences has at most 20 "
                                           "tokens (2.5 x d_h = 8, rounded up)")
    value, label = count(rows, "skipped_sequences")
    assert value == 3 and label.endswith("the shortest of them has 22 tokens")

    mixing = fed(ContextMixingMetric(ContextMixingConfig(max_sequences=2), seed=0), tracer, long_only)
    rows = mixing.finish(tracer)
    assert set(rows["variant"]) == {"scored_sequences", "skipped_sequences"}
    value, label = count(rows, "scored_sequences")
    assert value == 0 and label.startswith("no sequence scored: none of the 3 probe sequences has 3 to 16 tokens")
    value, label = count(rows, "skipped_sequences")
    assert value == 3 and label == ("3 probe sequences left out: 3 longer than max_tokens = 16 (the shortest of them "
                                    "has 22 tokens), 0 shorter than 3 tokens")


def test_context_mixing_scores_up_to_its_max_tokens_and_counts_the_rest(tracers):
    tracer = tracers[8]
    lengths = [2, 19, 22, 12, 41]
    for max_tokens, scored, longer, reference in ((16, [12], 3, "exact"), (24, [19, 22], 1, "estimate")):
        config = ContextMixingConfig(max_sequences=2, max_tokens=max_tokens, reference=reference, probes=2)
        rows = fed(ContextMixingMetric(config, seed=0), tracer, lengths).finish(tracer)
        assert sorted(set(rows.loc[rows["variant"] == "matrix:alti", "n_tokens"])) == [min(scored)]  # the example
        value, label = count(rows, "scored_sequences")
        assert value == len(scored) and label.startswith(
            f"{len(scored)} of {len(scored) + (max_tokens == 24)} eligible sequences of 3 to {max_tokens} tokens, the "
            f"first in corpus order (longest {max(scored)} tokens); reference: {reference}")
        value, label = count(rows, "skipped_sequences")
        assert value == longer + 1 and label == (f"{longer + 1} probe sequences left out: {longer} longer than "
                                                 f"max_tokens = {max_tokens} (the shortest of them has "
                                                 f"{min(n for n in lengths if n > max_tokens)} tokens), 1 shorter "
                                                 "than 3 tokens")
        assert rows.loc[rows["variant"] == "alti/spearman", "value"].notna().all()


def test_exact_falls_back_to_the_estimate_where_too_costly(tracers, capsys):
    tracer = tracers[8]
    lengths = [7, 12, 18]
    _, exact = attribute(tracer, lengths, method="exact")
    assert "own_probe_error" not in set(exact["variant"])
    assert "; exact block norms; " in count(exact, "attributed_sequences")[1]
    capsys.readouterr()
    _, fallback = attribute(tracer, lengths, method="exact", exact_max_flops=1e6)
    _, estimate = attribute(tracer, lengths, method="estimate")
    label = count(fallback, "attributed_sequences")[1]
    cost = sequence_flops("exact", 18, 32, 2, 8)
    assert (f"estimate with 4 probe directions per token, not exact: exact block norms would cost ~{cost:.1e} "
            "floating-point operations for a sequence of 18 tokens (d = 32, 2 layers), over exact_max_flops = "
            "1.0e+06") in label
    assert "not exact" in capsys.readouterr().err  # said at once too
    own = lambda rows: rows[(rows["variant"] == "own") & rows["sequence"].isna()].sort_values("layer")  # noqa: E731
    assert own(fallback)["value"].tolist() == own(estimate)["value"].tolist()  # the estimate, with its interval
    assert (own(fallback)["ci_high"] > own(fallback)["value"]).all() and "own_probe_error" in set(fallback["variant"])

    mixing = fed(ContextMixingMetric(ContextMixingConfig(max_sequences=2, exact_max_flops=1e6), seed=0), tracer, lengths)
    label = count(mixing.finish(tracer), "scored_sequences")[1]
    assert "reference: estimate with 8 probe directions per token, not exact: exact block norms would cost" in label
    assert "(its probe error is not in the score intervals); " in label


def test_the_default_budget_keeps_small_models_exact_and_moves_large_ones_to_the_estimate():
    budget = AttributionConfig().exact_max_flops
    assert budget == ContextMixingConfig().exact_max_flops == 1e16
    assert exact_or_estimate("exact", 80, 384, 6, budget, 8)[0] == "exact"  # MiniLM at the old cap
    assert exact_or_estimate("exact", 16, 2048, 16, budget, 8)[0] == "exact"  # a 1B decoder, context mixing
    assert exact_or_estimate("exact", 320, 4096, 32, budget, 8)[0] == "estimate"  # an 8B decoder at 2.5 d_h
    assert exact_or_estimate("estimate", 4, 8, 1, budget, 8) == ("estimate", "estimate with 8 probe directions "
                                                                  "per token")
    exact = lambda n: sequence_flops("exact", n, 384, 6, 8)  # noqa: E731
    assert exact(2 * 80) == pytest.approx(4 * exact(80), rel=0.05)  # about n^2


def test_a_cost_budget_takes_the_longest_affordable_prefix():
    budget = CostBudget(max_flops=7.0)
    assert budget.affordable([3.0, 3.0, 3.0]) == 2 and budget.affordable([3.0, 1.0, 1.0, 5.0]) == 3
    assert budget.affordable([3.0, 3.0, 1.0]) == 3 and budget.budget_note([3.0, 3.0, 1.0]) is None
    assert budget.budget_note([3.0, 3.0, 3.0]) == ("the cost budget was reached (max_flops = 7.0e+00 floating-point "
                                                    "operations: 2 sequences cost ~6.0e+00, the next would add ~3.0e+00)")
    assert budget.affordable([3.0, 5.0, 1.0]) == 1  # the first that does not fit ends it: none is skipped
    assert budget.budget_note([8.0]) == ("the cost budget was reached: the first sequence alone would cost ~8.0e+00 "
                                         "floating-point operations, over max_flops = 7.0e+00")
    assert AttributionConfig().max_flops == ContextMixingConfig().max_flops == 2e15


def test_the_default_cost_budget_keeps_the_default_samples_and_binds_a_135m_decoder_at_its_cap():
    """The default budget against the sample each model's default would take: MiniLM (d 384, 6 layers)
    fits its whole attribution sample (48 sequences up to its cap of 80 tokens) and context mixing's
    (24 of at most 16 tokens); mpnet (768, 12), SmolLM2 (576, 30) and Gemma 3 (640, 18) fit context
    mixing's exact reference on the 11 sentences of 3 to 16 tokens the default corpus has; SmolLM2's
    attribution at its cap of 160 tokens affords more than the 10 sentences an interval needs, not 48."""
    budget = AttributionConfig().max_flops
    assert 48 * sequence_flops("estimate", 80, 384, 6, 8) < budget
    mixing = lambda d, layers: sequence_flops("exact", 16, d, layers, 8) + sequence_flops("estimate", 16, d, layers, 8)  # noqa: E731
    assert 24 * mixing(384, 6) < budget
    assert all(11 * mixing(d, layers) < budget for d, layers in ((768, 12), (576, 30), (640, 18)))
    affordable = AttributionConfig().affordable([sequence_flops("estimate", 160, 576, 30, 8)] * 48)
    assert 10 <= affordable <= 20


def test_exact_needs_the_fewest_sequences_of_an_interval_to_fit_the_cost_budget():
    """Exact block norms are used only where ``sequences`` of them fit the sample's cost budget too:
    context mixing's exact reference of a 1B decoder (d 2048, 16 layers) at 16 tokens is within
    exact_max_flops for one sentence, but 10 of them are not within the default budget, so the
    estimator is used and the label says why; MiniLM's, mpnet's and SmolLM2's stay exact."""
    config = ContextMixingConfig()
    choose = lambda d, layers: exact_or_estimate("exact", 16, d, layers, config.exact_max_flops, 8, config.max_flops,  # noqa: E731
                                                 config.min_sequences)
    assert exact_or_estimate("exact", 16, 2048, 16, config.exact_max_flops, 8)[0] == "exact"  # one sentence fits
    method, how = choose(2048, 16)
    cost = 10 * sequence_flops("exact", 16, 2048, 16, 8)
    assert method == "estimate" and how == (f"estimate with 8 probe directions per token, not exact: exact block norms "
                                            f"of 10 sequences of 16 tokens (d = 2048, 16 layers) would cost ~{cost:.1e} "
                                            "floating-point operations, over the cost budget max_flops = 2.0e+15")
    assert all(choose(d, layers)[0] == "exact" for d, layers in ((384, 6), (768, 12), (576, 30)))


def test_the_cost_budget_ends_the_sample_and_says_so(tracers, capsys):
    """Attribution and context mixing with a budget that affords two of their sequences take those
    two (the target never met), say why in the label and at once; a budget that exact block norms do
    not fit moves context mixing's reference to the estimate; a budget below the first sequence is a
    counted result, not a failure."""
    tracer = tracers[8]
    lengths = [7, 12, 18, 9, 15]
    probe = AttributionMetric(AttributionConfig(), 0)
    fed(probe, tracer, lengths)
    order = probe.order()
    costs = [sequence_flops("estimate", n, 32, 2, 4) for _, n in order[:4]]
    config = dict(target_half_width=1e-9, max_flops=sum(costs[:2]) + 0.5 * costs[2])
    _, rows = attribute(tracer, lengths, **config)
    value, label = count(rows, "attributed_sequences")
    assert value == 2 and label.endswith("stopped because " + CostBudget(max_flops=config["max_flops"]).budget_note(costs))
    assert "2 sequences at most: the cost budget was reached" in capsys.readouterr().err
    _, rows = attribute(tracer, lengths, max_flops=0.5 * costs[0])
    value, label = count(rows, "attributed_sequences")
    assert value == 0 and label.startswith("no sequence attributed: the cost budget was reached: the first sequence "
                                           f"alone would cost ~{costs[0]:.1e}")

    mixing_costs = [sequence_flops("exact", n, 32, 2, 8) + sequence_flops("estimate", n, 32, 2, 8)
                    for n in (7, 12, 9)]  # the first three eligible, in corpus order
    config = ContextMixingConfig(max_sequences=3, target_half_width=1e-9, min_sequences=1,
                                 max_flops=sum(mixing_costs[:2]) + 0.5 * mixing_costs[2])
    rows = fed(ContextMixingMetric(config, seed=0), tracer, lengths).finish(tracer)
    value, label = count(rows, "scored_sequences")
    assert value == 2 and label.endswith("stopped because " + config.budget_note(mixing_costs))
    config = ContextMixingConfig(max_sequences=3, max_flops=0.5 * mixing_costs[0])  # exact does not fit, the estimate does
    value, label = count(fed(ContextMixingMetric(config, seed=0), tracer, lengths).finish(tracer), "scored_sequences")
    estimated = [2 * sequence_flops("estimate", n, 32, 2, 8) for n in (7, 12, 9)]  # the reference's and the one-layer estimates
    assert value == config.affordable(estimated) >= 1
    assert "reference: estimate with 8 probe directions per token, not exact: exact block norms of 3 sequences of 12" in label
    config = ContextMixingConfig(max_sequences=3, max_flops=0.5 * estimated[0])
    value, label = count(fed(ContextMixingMetric(config, seed=0), tracer, lengths).finish(tracer), "scored_sequences")
    assert value == 0 and label.startswith("no sequence scored: the cost budget was reached: the first sequence alone")


def test_progress_inside_a_long_sequence(tracers, capsys):
    attribute(tracers[8], [7, 18])
    err = capsys.readouterr().err
    assert "  sequence 1 (18 tokens):" in err and "/72 [" in err  # 18 tokens x 4 probes, product by product
