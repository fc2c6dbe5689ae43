"""Data shaping for the leaderboard: headline columns from the metric declarations, status of failed
and partial models, filters, curves with normalised depth, the stored example maps, and the exports."""

import numpy as np
import pandas as pd

from idsuite.leaderboard.data import (
    DETAIL_COLUMNS,
    LEAD_COLUMNS,
    LENGTH_BOUND,
    LENGTH_BOUND_LABEL,
    PAIRED_SPECS,
    TABLE_SPECS,
    Board,
    filter_table,
    interval_ends,
    interval_label,
    reader_order,
    sentences_label,
)
from idsuite.leaderboard.export import export
from idsuite.results.headlines import headline_variants, layer_rows
from idsuite.results.identity import SETTING_SEPARATOR, short_setting_names
from idsuite.results.labels import headline_label
from idsuite.results.query import ResultQuery
from idsuite.suite.specs import SPECS
from idsuite.suite.uncertainty import MIN_CLUSTERS
from tests.leaderboard.conftest import TWELVE


def test_main_table_has_one_row_per_model_and_one_column_per_headline(results_dir):
    board = Board(results_dir)
    table = board.model_table()
    assert list(table.columns[:3]) == LEAD_COLUMNS and table.columns[-len(DETAIL_COLUMNS):].tolist() == DETAIL_COLUMNS
    expected = [c for s in TABLE_SPECS for c in (headline_label(s), interval_label(s), *interval_ends(s), sentences_label(s),
                                                     *([f"{s.display_name}: best g"] if s.headline_best_of else []),
                                                     *([LENGTH_BOUND_LABEL] if s.name == LENGTH_BOUND else []))]
    assert list(table.columns[3:3 + len(expected)]) == expected
    table = table.set_index("model")
    assert sorted(table.index) == sorted(["tiny-bert", "tiny-bert-random-init", "tiny-llama", "tiny-partial", "broken-hub-model"])
    assert table.loc["tiny-bert", "status"] == "complete" and table.loc["tiny-bert", "kind"] == "encoder"
    assert table.loc["tiny-llama", "kind"] == "decoder" and table.loc["tiny-llama", "n_kv_heads"] == 2
    assert table.loc["tiny-bert-random-init", "trained"] == "control"
    assert table.loc["tiny-bert-random-init", "control_of"] == "tiny-bert"
    assert table.loc["broken-hub-model", "status"] == "failed" and "hub" in table.loc["broken-hub-model", "note"]
    assert table.loc["tiny-partial", "status"] == "partial" and "hidden_token_attribution" in table.loc["tiny-partial", "note"]
    own = headline_label(SPECS.get("hidden_token_attribution"))
    assert np.isnan(table.loc["tiny-partial", own]) and 0 < table.loc["tiny-bert", own] <= 1
    # headline of identifiability: the best g at the last layer, and which g it was
    ident = SPECS.get("token_identifiability")
    rows = layer_rows(ResultQuery(results_dir).all_rows())
    last = rows[(rows.model_id == "tiny-bert") & (rows.metric == "token_identifiability")]
    last = last[(last.layer == last.layer.max()) & last.variant.isin(ident.headline_best_of)]
    assert table.loc["tiny-bert", headline_label(ident)] == last["value"].max()
    assert table.loc["tiny-bert", f"{ident.display_name}: best g"] in ident.headline_best_of
    # the rank headline is the mean over layers of the per-layer share
    rank = SPECS.get("rank_deficiency")
    share = rows[(rows.model_id == "tiny-llama") & (rows.metric == "rank_deficiency") & (rows.variant == rank.headline)]
    assert abs(table.loc["tiny-llama", headline_label(rank)] - share["value"].mean()) < 1e-12
    assert not table["remote_code"].any() and (table["stale"] == "").all()
    # the sentences behind each number; no interval below MIN_CLUSTERS of them
    sentences = ResultQuery(results_dir).all_rows(where="sequence IS NOT NULL", columns=["model_id", "metric", "sequence"])
    counted = sentences.groupby(["model_id", "metric"])["sequence"].nunique()
    for spec in TABLE_SPECS:
        assert table.loc["tiny-bert", sentences_label(spec)] == counted["tiny-bert", spec.name]
        few = counted["tiny-bert", spec.name] < MIN_CLUSTERS
        assert np.isnan(table.loc["tiny-bert", interval_label(spec)]) == few, spec.name
        low, high = (table.loc["tiny-bert", c] for c in interval_ends(spec))
        assert np.isnan(low) == few or low <= table.loc["tiny-bert", headline_label(spec)] <= high
    assert counted["tiny-bert", "token_identifiability"] < MIN_CLUSTERS <= counted["tiny-bert", "rank_deficiency"]
    # a sentence longer than d_h forces a null space: the measured share is never below the length bound
    # (here, tiny models with d_h = 8, they are equal: the headline is a property of corpus and d_h)
    measured = table[headline_label(rank)].dropna()
    bound = table.loc[measured.index, LENGTH_BOUND_LABEL]
    assert (bound <= measured + 1e-12).all() and np.allclose(bound, measured)


def test_filters(results_dir):
    table = Board(results_dir).model_table()
    assert set(filter_table(table, families=["llama"])["model"]) == {"tiny-llama", "tiny-partial"}
    assert set(filter_table(table, kinds=["encoder"])["model"]) == {"tiny-bert", "tiny-bert-random-init"}
    assert set(filter_table(table, search="RANDOM")["model"]) == {"tiny-bert-random-init"}
    assert "broken-hub-model" in set(filter_table(table, params=(0.0, 0.001))["model"])  # no size: kept


def test_curves_controls_heads_and_example_maps(results_dir):
    board = Board(results_dir)
    assert board.control_for("tiny-bert") == "tiny-bert-random-init"
    assert board.control_for("tiny-bert-random-init") == "tiny-bert"
    assert board.base_of("tiny-bert-random-init") == "tiny-bert" and board.base_of("tiny-bert") is None
    curves = board.layer_curves(["tiny-bert", "tiny-llama"], "effective_attention", "null_share", True)
    assert set(curves["model"]) == {"tiny-bert", "tiny-llama"} and sorted(curves["depth"].unique()) == [0.5, 1.0]
    assert curves["layer"].dtype.kind == "i"
    grid = board.head_matrix("tiny-bert", "rank_deficiency", "nonidentifiable_share")
    assert grid.shape == (2, 4)
    assert ("rank_deficiency", "nonidentifiable_share") in board.per_head_variants("tiny-bert")
    assert ("rank_deficiency", "rank") not in board.per_head_variants("tiny-bert")  # per sequence, not per head
    example = board.attention_example("tiny-bert", 1, 0)
    n = len(example["tokens"])
    assert example["tokens"][0] == "[CLS]" and example["tokens"][-1] == "[SEP]"  # in position order
    assert example["raw"].shape == (n, n) and np.allclose(example["raw"].sum(1), 1, atol=1e-5)
    assert np.allclose(example["raw"], example["effective"] + example["null"])
    other = board.attention_example("tiny-bert", 2, 3)
    assert not np.allclose(other["raw"], example["raw"])  # the head asked for, not the first one stored


def test_export_writes_latex_and_figures(results_dir, tmp_path):
    written = export(Board(results_dir), tmp_path)
    tex = (tmp_path / "leaderboard.tex").read_text()
    assert tex.startswith("% Needs \\usepackage{booktabs,tabularx}") and tex.count(r"\begin{tabularx}{\columnwidth}") == 2
    assert r"\label{tab:idsuite}" in tex and r"\label{tab:idsuite-models}" in tex and "sentences &" in tex
    plain = tex.replace(r"\allowbreak{}", "")
    assert "tiny-bert" in plain and "tiny-llama" in plain
    bert = next(line for line in plain.splitlines() if line.startswith("tiny-bert &"))  # the facts table
    assert bert == r"tiny-bert & encoder & 21.2k & 2 & 4 & 8 \\[2pt]"  # layers, heads, d_h as integers
    control = next(line for line in plain.splitlines() if "tiny-bert-random-init &" in line)
    assert control.startswith("-- & ")  # a baseline: no rank
    names = {p.name for p in written}
    for name, spec in SPECS.items():
        stem = f"{name}__{spec.headline.replace('/', '-')}"
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
    assert all(p.stat().st_size > 1000 for p in written if p.suffix != ".tex")


def test_one_setting_per_metric_and_the_newest_cell_per_model(results_dir, two_settings_dir):
    board = Board(two_settings_dir)
    options = board.settings
    assert all(len(v) == 1 for k, v in options.items() if k != "hidden_token_attribution")
    estimate, exact = options["hidden_token_attribution"]  # the estimate is what most models have
    assert short_setting_names([estimate, exact]) == {estimate: "method=estimate", exact: "method=exact"}
    assert "token limit 128" in estimate.split(SETTING_SEPARATOR)

    first = set(Board(results_dir).stored["cell_key"])  # the cells before tiny-bert's re-runs
    shown = board.cells
    assert (shown.groupby(["model_id", "init_seed", "metric"], dropna=False)["cell_key"].nunique() == 1).all()
    assert shown.loc[shown["model_id"] == "tiny-bert-random-init", "init_seed"].nunique() == 3  # its three seeds
    assert board.hidden == len(SPECS) + 1  # tiny-bert: an older cell of every metric and the exact one
    bert = shown[shown["model_id"] == "tiny-bert"]
    assert set(bert["metric"]) == set(SPECS) and not set(bert["cell_key"]) & first  # the newer cells
    assert shown[shown["model_id"] != "tiny-bert"]["cell_key"].isin(first).all()
    curve = board.layer_curves(["tiny-bert"], "hidden_token_attribution", "own")
    assert curve["layer"].tolist() == [1, 2]

    own = headline_label(SPECS.get("hidden_token_attribution"))
    rows = layer_rows(ResultQuery(two_settings_dir).all_rows())
    exact_rows = rows[(rows["metric"] == "hidden_token_attribution") & (rows["variant"] == "own")
                      & rows["metric_config"].str.contains('"method": "exact"')]
    with_exact = Board(two_settings_dir, {"hidden_token_attribution": exact})
    table = with_exact.model_table().set_index("model")
    assert table.loc["tiny-bert", own] == exact_rows.sort_values("layer")["value"].iloc[-1]
    assert table.loc["tiny-bert", own] != board.model_table().set_index("model").loc["tiny-bert", own]
    assert np.isnan(table.loc["tiny-llama", own]) and table.loc["tiny-llama", "status"] == "partial"
    provenance = with_exact.provenance("tiny-bert")
    assert len(provenance) == len(SPECS) and provenance["metric_config"].str.contains('"method": "exact"').sum() == 1


def test_paired_differences_and_their_export(results_dir, tmp_path):
    from idsuite.leaderboard.export import export_paired

    board = Board(results_dir)
    same = board.paired("tiny-bert", "tiny-bert", "rank_deficiency")
    assert len(same) == 3 and (same["difference"] == 0).all() and (same["ci_high"] - same["ci_low"] == 0).all()
    versus = board.paired("tiny-bert", "tiny-bert-random-init", "effective_attention")  # three control seeds pooled
    assert versus["layer"].tolist()[:2] == [1, 2] and (versus["ci_low"] <= versus["difference"]).all()
    few = board.paired("tiny-bert", "tiny-llama", "hidden_token_attribution")
    assert few.shape[0] == 3  # same depth: layers pair
    assert (few["sequences"] < MIN_CLUSTERS).all() and few["ci_low"].isna().all() and not few["excludes_zero"].any()
    paths = export_paired(board, "tiny-bert", None, tmp_path)
    csv = pd.read_csv(paths[0])
    assert set(csv["metric"]) == {s.name for s in PAIRED_SPECS} and r"\begin{table}" in paths[1].read_text()
    assert "tiny-bert minus tiny-bert-random-init" in paths[1].read_text().replace("\\_", "_")
    assert "nan" not in paths[1].read_text()  # two sentences of attribution: "--", no interval
    figures = {p.name for p in paths[2:]}
    assert figures == {f"{paths[0].stem}__{s.name}.{suffix}" for s in PAIRED_SPECS for suffix in ("png", "pdf")}


def test_a_board_of_the_headline_variants_gives_the_same_table_and_headline_curves(results_dir):
    """What the paper export reads (``variants``: the headline candidates only) against the whole board."""
    whole, headlines = Board(results_dir), Board(results_dir, variants=headline_variants())
    assert len(headlines.aggregates) < len(whole.aggregates)
    pd.testing.assert_frame_equal(headlines.model_table(), whole.model_table())
    models = whole.model_table()["model"].tolist()
    assert models == reader_order(models) and whole.models() == reader_order(whole.models())
    for name, spec in SPECS.items():
        pd.testing.assert_frame_equal(headlines.layer_curves(models, name, spec.headline),
                                      whole.layer_curves(models, name, spec.headline))
    assert Board(results_dir, variants=[]).aggregates.empty


def test_models_are_ordered_as_a_reader_alphabetises():
    ids = ["SmolLM2-135M", "all-MiniLM-L6-v2", "Gemma-3", "bert-base", "gemma-3"]
    assert reader_order(ids) == ["all-MiniLM-L6-v2", "bert-base", "Gemma-3", "gemma-3", "SmolLM2-135M"]


def test_ranks_of_twelve_models_follow_their_known_order_and_controls_are_not_ranked(twelve_models_dir):
    # copy k of a model has every per-layer value scaled by 1 - k / 50: within a family, copy 0 is best on
    # a higher-is-better headline and copy 5 best on a lower-is-better one
    board = Board(twelve_models_dir)
    for spec in TABLE_SPECS:
        ranks = board.ranks(spec.name)
        assert set(ranks["model"]) <= set(TWELVE) and len(ranks) >= 6  # trained models only, never a control
        assert ((ranks["rank_low"] <= ranks["rank"]) & (ranks["rank"] <= ranks["rank_high"])).all()
        higher = spec.headline_variant().direction == "higher"
        for family in ("tiny-bert", "tiny-llama"):
            part = ranks[ranks["model"].str.startswith(family)].sort_values("model")
            if len(part) < 2:
                continue
            order = part["rank"].tolist()  # copies 00 .. 05
            assert order == sorted(order, reverse=not higher), (spec.name, family, order)
    diffs = board.control_differences("effective_attention")
    assert sorted(diffs["model"]) == sorted(TWELVE) and (diffs["control"] == diffs["model"] + "-random-init").all()


def test_a_row_is_built_from_one_set_of_weights_and_flags_newer_other_weights(results_dir, tmp_path):
    """tiny-bert's files changed and only one metric was measured again (an interrupted re-run):
    the row holds that metric of the new weights alone, not the old weights' other metrics, and says so."""
    import shutil

    from idsuite.results.identity import cell_key
    from idsuite.results.schema import KEY_COLUMNS
    from idsuite.results.store import CellRef, ResultStore

    root = tmp_path / "results"
    shutil.copytree(results_dir, root)
    query = ResultQuery(root)
    cells = query.cells()
    old = cells[(cells["model_id"] == "tiny-bert") & (cells["metric"] == "rank_deficiency")].iloc[0]
    rows = query.cell_rows([CellRef("tiny-bert", "rank_deficiency", old["cell_key"])])
    rows = rows.assign(model_fingerprint="local:sha256=" + "f" * 16, timestamp="2099-01-01T00:00:00.000000+00:00")
    key = cell_key(rows.iloc[0][KEY_COLUMNS].to_dict())
    ResultStore(root).write(CellRef("tiny-bert", "rank_deficiency", key), rows.assign(cell_key=key))
    board = Board(root)
    table = board.model_table().set_index("model")
    assert table.loc["tiny-bert", "mixed_weights"] and "other weights" in table.loc["tiny-bert", "note"]
    assert not table.drop(index="tiny-bert")["mixed_weights"].any()
    bert = board.cells[board.cells["model_id"] == "tiny-bert"]
    assert bert["cell_key"].tolist() == [key] and table.loc["tiny-bert", "status"] == "partial"
