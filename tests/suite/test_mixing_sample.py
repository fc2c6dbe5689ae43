"""Context mixing sizes its sample as attribution does (``SequentialSample``): sentences of 3 to
``max_tokens`` tokens in corpus order, scored one at a time until the widest last-layer Spearman
interval is at most the target, after at least ``min_sequences`` and at most ``max_sequences``; the
``scored_sequences`` label says how far it got and why it stopped."""

import re

import numpy as np
import pandas as pd
import pytest

from idsuite.suite.metrics.context_mixing import ContextMixingMetric
from idsuite.suite.specs.context_mixing import MEASURES, ContextMixingConfig
from idsuite.suite.uncertainty import MIN_CLUSTERS
from tests.suite.test_any_length import count, fed, tracer_with_heads

LENGTHS = [9, 2, 12, 7, 22, 14, 5, 10, 8]
"""Tokens per probe sequence: 7 eligible (3 to 16 tokens), in corpus order 9, 12, 7, 14, 5, 10, 8."""
ELIGIBLE = [n for n in LENGTHS if 3 <= n <= 16]


@pytest.fixture(scope="module")
def tracer(tmp_path_factory):
    return tracer_with_heads(tmp_path_factory.mktemp("sample"), 4)


def scored(tracer, lengths: list[int], **config) -> tuple[float, str, int, pd.DataFrame]:
    """The count of scored sequences, its label and its token count, and the rows."""
    config = ContextMixingConfig(reference="estimate", probes=2, **config)
    rows = fed(ContextMixingMetric(config, seed=0), tracer, lengths).finish(tracer)
    value, label = count(rows, "scored_sequences")
    tokens = int(rows.loc[rows["variant"] == "scored_sequences", "n"].iloc[0])
    return value, label, tokens, rows


def test_the_default_sample_can_show_an_interval():
    config = ContextMixingConfig()
    assert config.min_sequences == MIN_CLUSTERS and config.max_sequences == 24 and config.target_half_width == 0.05


def test_a_target_met_at_once_stops_at_min_sequences_in_corpus_order(tracer):
    value, label, tokens, rows = scored(tracer, LENGTHS, min_sequences=3, max_sequences=6, target_half_width=10)
    assert value == 3 and tokens == sum(ELIGIBLE[:3])  # the first three eligible ones
    assert label.startswith(f"3 of {len(ELIGIBLE)} eligible sequences of 3 to 16 tokens, the first in corpus order "
                            f"(longest {max(ELIGIBLE[:3])} tokens); reference: estimate")
    assert label.endswith("(target 10.0); stopped because the target interval was met")
    spearman = rows[(rows["variant"] == "alti/spearman") & rows["layer"].notna()]
    assert (spearman["n_clusters"] == 3).all()
    assert sorted(set(rows.loc[rows["variant"] == "matrix:alti", "n_tokens"])) == [min(ELIGIBLE[:3])]  # the example


def test_a_target_never_met_stops_at_max_sequences(tracer):
    value, label, tokens, _ = scored(tracer, LENGTHS, min_sequences=2, max_sequences=4, target_half_width=1e-9)
    assert value == 4 and tokens == sum(ELIGIBLE[:4])
    assert label.endswith("(target 1e-09); stopped because max_sequences (4) was reached")


def test_fewer_eligible_than_min_sequences_scores_them_all_and_says_the_corpus_ran_out(tracer):
    value, label, tokens, _ = scored(tracer, LENGTHS[:4], target_half_width=10)  # min_sequences 10, 3 eligible
    assert value == 3 and tokens == 9 + 12 + 7
    assert label.startswith("3 of 3 eligible sequences")
    assert label.endswith("(target 10.0); stopped because the corpus ran out of eligible sequences")


def test_the_label_gives_the_widest_last_layer_spearman_half_width_stored(tracer):
    _, label, _, rows = scored(tracer, LENGTHS, min_sequences=2, max_sequences=5, target_half_width=1e-9)
    last = rows[rows["layer"] == rows["layer"].max()].set_index("variant")
    halves = {m.name: (last.loc[f"{m.name}/spearman", "ci_high"] - last.loc[f"{m.name}/spearman", "ci_low"]) / 2
              for m in MEASURES}
    widest = max(halves, key=halves.get)
    assert len(set(np.round(list(halves.values()), 6))) > 1  # the measures' intervals differ: "widest" means something
    assert reached(label) == (widest, f"{halves[widest]:.3f}")


def reached(label: str) -> tuple[str, str]:
    """The widest measure and its last-layer half-width, as the label gives them."""
    found = re.search(r"last-layer Spearman of the widest measure \((\w+)\) \+-([0-9.]+) \(target", label)
    assert found, label
    return found[1], found[2]


def test_it_stops_at_the_first_sample_whose_widest_interval_meets_the_target(tracer):
    """The half-width reached after k sentences (min = max = k), then targets between those: the
    sample stops at the first k >= min_sequences whose half-width is at most the target."""
    halves = {k: float(reached(scored(tracer, LENGTHS, min_sequences=k, max_sequences=k)[1])[1])
              for k in range(2, len(ELIGIBLE) + 1)}
    distinct = sorted(set(halves.values()))
    assert len(distinct) > 2
    for target in (np.array(distinct[:-1]) + np.array(distinct[1:])) / 2:  # between two (rounded) half-widths
        expected = min(k for k, half in halves.items() if half <= target)
        value = scored(tracer, LENGTHS, min_sequences=2, max_sequences=len(ELIGIBLE), target_half_width=target)[0]
        assert value == expected, (target, halves)
