"""Data shaping for the leaderboard: headline columns from the metric specs, status of failed and
partial models, filters, curves with normalised depth, the stored example maps, and the exports."""

import numpy as np

from leaderboard import data
from leaderboard.export import export
from suite.metrics import METRICS


def test_main_table_has_one_row_per_model_and_one_column_per_headline(results_dir):
    results = data.load_results(results_dir)
    table = data.model_table(results).set_index("model")
    assert sorted(table.index) == sorted(["tiny-bert", "tiny-bert-random-init", "tiny-llama", "tiny-partial", "broken-hub-model"])
    for spec in (cls.spec for _, cls in METRICS.items()):
        assert data.headline_label(spec) in table.columns
    assert table.loc["tiny-bert", "status"] == "complete" and table.loc["tiny-bert", "kind"] == "encoder"
    assert table.loc["tiny-llama", "kind"] == "decoder" and table.loc["tiny-llama", "n_kv_heads"] == 2
    assert table.loc["tiny-bert-random-init", "trained"] == "control"
    assert table.loc["broken-hub-model", "status"] == "failed" and "hub" in table.loc["broken-hub-model", "note"]
    assert table.loc["tiny-partial", "status"] == "partial" and "hidden_token_attribution" in table.loc["tiny-partial", "note"]
    own = data.headline_label(METRICS.get("hidden_token_attribution").spec)
    assert np.isnan(table.loc["tiny-partial", own]) and 0 < table.loc["tiny-bert", own] <= 1
    # headline of identifiability: the best g at the last layer, and which g it was
    ident = METRICS.get("token_identifiability").spec
    rows = data.layer_rows(results)
    last = rows[(rows.model_id == "tiny-bert") & (rows.metric == "token_identifiability")]
    last = last[last.layer == last.layer.max()]
    assert table.loc["tiny-bert", data.headline_label(ident)] == last["value"].max()
    assert table.loc["tiny-bert", f"{ident.display_name}: best g"] in ident.headline_best_of
    # the rank headline is the mean over layers of the per-layer share
    rank = METRICS.get("rank_deficiency").spec
    share = rows[(rows.model_id == "tiny-llama") & (rows.metric == "rank_deficiency") & (rows.variant == rank.headline)]
    assert abs(table.loc["tiny-llama", data.headline_label(rank)] - share["value"].mean()) < 1e-12


def test_filters(results_dir):
    table = data.model_table(data.load_results(results_dir))
    assert set(data.filter_table(table, families=["llama"])["model"]) == {"tiny-llama", "tiny-partial"}
    assert set(data.filter_table(table, kinds=["encoder"])["model"]) == {"tiny-bert", "tiny-bert-random-init"}
    assert set(data.filter_table(table, search="RANDOM")["model"]) == {"tiny-bert-random-init"}
    assert "broken-hub-model" in set(data.filter_table(table, params=(0.0, 0.001))["model"])  # no size: kept


def test_curves_controls_heads_and_example_maps(results_dir):
    results = data.load_results(results_dir)
    assert data.control_for(results, "tiny-bert") == "tiny-bert-random-init"
    assert data.control_for(results, "tiny-bert-random-init") == "tiny-bert"
    curves = data.layer_curves(results, ["tiny-bert", "tiny-llama"], "effective_attention", "null_share", True)
    assert set(curves["model"]) == {"tiny-bert", "tiny-llama"} and sorted(curves["depth"].unique()) == [0.5, 1.0]
    grid = data.head_matrix(results, "tiny-bert", "rank_deficiency", "nonidentifiable_share")
    assert grid.shape == (2, 4)
    example = data.attention_example(results, "tiny-bert", 1, 0)
    n = len(example["tokens"])
    assert example["raw"].shape == (n, n) and np.allclose(example["raw"].sum(1), 1, atol=1e-5)
    assert np.allclose(example["raw"], example["effective"] + example["null"])


def test_export_writes_latex_and_figures(results_dir, tmp_path):
    written = export(data.load_results(results_dir), tmp_path)
    tex = (tmp_path / "leaderboard.tex").read_text()
    assert r"\begin{tabular}" in tex and "tiny-bert" in tex and "tiny-llama" in tex
    names = {p.name for p in written}
    for name, cls in METRICS.items():
        stem = f"{name}__{cls.spec.headline.replace('/', '-')}"
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
    assert all(p.stat().st_size > 1000 for p in written if p.suffix != ".tex")
    assert (tmp_path / "leaderboard.tex").read_bytes().startswith(b"\\begin{tabular}")


def test_one_setting_per_metric_and_the_newest_cell_per_model(results_dir, two_settings_dir):
    stored = data.load_results(two_settings_dir)
    options = data.settings(stored)
    assert all(len(v) == 1 for k, v in options.items() if k != "hidden_token_attribution")
    estimate, exact = options["hidden_token_attribution"]  # the estimate is what most models have
    assert data.setting_names([estimate, exact]) == {estimate: "method=estimate", exact: "method=exact"}

    first = set(data.load_results(results_dir)["cell_key"])  # the cells before tiny-bert's re-runs
    shown = data.select_cells(stored)
    assert (shown.groupby(["model_id", "metric"])["cell_key"].nunique() == 1).all()
    assert data.cell_count(stored) - data.cell_count(shown) == 5  # tiny-bert: 4 older cells and the exact one
    assert "token limit 128" in estimate.split(data.SETTING_SEPARATOR)
    assert data.select_cells(stored.drop(columns="max_tokens")).equals(shown.drop(columns="max_tokens"))  # older stores
    bert = shown[shown["model_id"] == "tiny-bert"]
    assert set(bert["metric"]) == set(METRICS) and not set(bert["cell_key"]) & first  # the newer cells
    assert shown[shown["model_id"] != "tiny-bert"]["cell_key"].isin(first).all()
    mixed = data.layer_curves(stored, ["tiny-bert"], "hidden_token_attribution", "own")
    curve = data.layer_curves(shown, ["tiny-bert"], "hidden_token_attribution", "own")
    assert len(mixed) == 3 * len(curve) and curve["layer"].tolist() == [1, 2]

    own = data.headline_label(METRICS.get("hidden_token_attribution").spec)
    rows = data.layer_rows(stored)
    exact_rows = rows[(rows["metric"] == "hidden_token_attribution") & (rows["variant"] == "own")
                      & rows["metric_config"].str.contains('"method": "exact"')]
    with_exact = data.model_table(data.select_cells(stored, {"hidden_token_attribution": exact})).set_index("model")
    assert with_exact.loc["tiny-bert", own] == exact_rows.sort_values("layer")["value"].iloc[-1]
    assert with_exact.loc["tiny-bert", own] != data.model_table(shown).set_index("model").loc["tiny-bert", own]
    assert np.isnan(with_exact.loc["tiny-llama", own]) and with_exact.loc["tiny-llama", "status"] == "partial"
    provenance = data.cell_provenance(data.select_cells(stored, {"hidden_token_attribution": exact}), "tiny-bert")
    assert len(provenance) == len(data.specs()) and provenance["metric_config"].str.contains('"method": "exact"').sum() == 1
