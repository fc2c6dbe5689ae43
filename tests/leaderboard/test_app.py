"""Each view of the Streamlit app, run by Streamlit's AppTest on the fixture results."""

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from idsuite import leaderboard
from idsuite.leaderboard import charts
from idsuite.leaderboard.data import PAIRED_SPECS, Board, interval_label
from idsuite.results.labels import headline_label
from idsuite.suite.specs import SPECS
from idsuite.suite.specs.context_mixing import MEASURES
from idsuite.suite.uncertainty import MIN_CLUSTERS

APP = str(Path(leaderboard.__file__).parent / "app.py")


@pytest.fixture
def app(results_dir, monkeypatch):
    monkeypatch.setenv("IDSUITE_RESULTS", str(results_dir))
    return AppTest.from_file(APP, default_timeout=60)


def _frame(app, column: str):
    """The first data frame of the page with ``column``."""
    return next(frame.value for frame in app.dataframe if column in frame.value.columns)


def test_leaderboard_ranks_trained_models_and_lists_controls_as_baselines(app):
    app.run()
    assert not app.exception
    assert app.main[0].value == "Identifiability in transformers"  # the title first: no stray text above it
    ranked, baselines = app.dataframe[0].value, app.dataframe[1].value
    assert list(ranked.columns[:2]) == ["rank", "model"]
    assert sorted(ranked["model"]) == ["broken-hub-model", "tiny-bert", "tiny-llama"]  # trained models only
    assert sorted(baselines["control"]) == ["tiny-bert-random-init", "tiny-partial"]
    assert ranked.set_index("model").loc["broken-hub-model", "rank"] == "–"  # nothing to rank
    cards = ranked.set_index("model")["card"]  # local weights have no card, nor weights never identified (a hub
    assert cards.isna()["tiny-bert"] and cards.isna()["broken-hub-model"]  # model that failed before its commit resolved)
    rank = SPECS.get("rank_deficiency")  # the first column ranks by default; 12 sentences: an interval
    shown = ranked.set_index("model").loc["tiny-bert", rank.display_name]
    table = Board(app_results(app)).model_table().set_index("model")
    value, half = table.loc["tiny-bert", headline_label(rank)], table.loc["tiny-bert", interval_label(rank)]
    assert shown == f"{value:.3f} ± {half:.3f}"
    own = SPECS.get("hidden_token_attribution")  # two sentences: the value alone
    assert " ± " not in ranked.set_index("model").loc["tiny-bert", own.display_name]
    captions = " ".join(c.value for c in app.caption)
    assert "Corpus tiny; sentences behind each number: Non-identifiable heads 12" in captions
    assert f"Below {MIN_CLUSTERS} sentences no interval is shown" in captions
    assert "From sentence length alone, these models would score 0.833" in captions
    warnings = " ".join(w.value for w in app.warning)
    assert "broken-hub-model: failed" in warnings and "tiny-partial: partial" in warnings
    app.text_input[0].set_value("TINY-B").run()
    assert app.dataframe[0].value["model"].tolist() == ["tiny-bert"]
    assert app.dataframe[1].value["control"].tolist() == ["tiny-bert-random-init"]
    assert app.query_params["search"] == "TINY-B"  # the filter is in the URL
    app.text_input[0].set_value("").run()
    app.multiselect[0].set_value(["llama"]).run()
    assert app.dataframe[0].value["model"].tolist() == ["tiny-llama"]
    assert [b.label for b in app.get("download_button")] == ["Download CSV", "Download LaTeX",
                                                             "Per-sentence rows (Parquet)", "Per-sentence rows (CSV)"]


def app_results(app) -> str:
    import os

    return os.environ["IDSUITE_RESULTS"]


def test_the_difference_to_the_own_control_is_one_click_away(app):
    app.run()
    app.radio[1].set_value("Difference to its own random-init control").run()
    assert not app.exception
    ranked = app.dataframe[0].value.set_index("model")
    spec = SPECS.get("effective_attention")
    diff = Board(app_results(app)).control_differences(spec.name).set_index("model").loc["tiny-bert"]
    assert ranked.loc["tiny-bert", spec.display_name] == (
        f"{diff['difference']:+.3f} [{diff['ci_low']:+.3f}, {diff['ci_high']:+.3f}]")
    assert app.query_params["show"] == "Difference to its own random-init control"


def test_the_url_reproduces_a_view(results_dir, monkeypatch):
    monkeypatch.setenv("IDSUITE_RESULTS", str(results_dir))
    app = AppTest.from_file(APP, default_timeout=60)
    app.query_params.update({"view": "Compare", "models": ["tiny-llama", "tiny-bert"]})
    app.run()
    assert not app.exception
    assert app.radio[0].value == "Compare" and app.multiselect[0].value == ["tiny-llama", "tiny-bert"]
    app = AppTest.from_file(APP, default_timeout=60)
    app.query_params.update({"view": "Model", "model": "tiny-llama"})
    app.run()
    assert app.selectbox[0].value == "tiny-llama"


def _specs(app) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in app.get("vega_lite_chart")]


def _layers(spec: dict) -> list[dict]:
    return spec.get("layer", [spec])


def test_model_view_shows_curves_heatmaps_and_maps(app):
    app.run()
    app.radio[0].set_value("Model").run()
    assert not app.exception
    assert app.selectbox[0].value == "tiny-bert"
    assert "tiny-bert-random-init" in app.caption[0].value
    specs = _specs(app)
    curves = [s for s in specs if "layer" in s]
    assert len(curves) == len(SPECS)  # a curve per metric
    for curve in curves:  # a band, integer layer ticks; the control drawn wide and dashed beneath the model
        band, control, trained = curve["layer"]
        assert band["mark"]["type"] == "area" and band["encoding"]["y2"]["field"] == "ci_high"
        assert control["encoding"]["x"]["axis"] == {"format": "d", "tickMinStep": 1}
        assert control["mark"]["strokeDash"] and control["mark"]["strokeWidth"] > trained["mark"]["strokeWidth"]
        legend = control["encoding"]["color"]["legend"]
        assert legend["labelLimit"] == 0 and legend["symbolOpacity"] == 1 and legend["orient"] == "bottom"
        assert curve["height"] == charts.PLOT_HEIGHT and curve["autosize"]["type"] == "fit-x"  # legends add height
        assert "better" in " ".join(band["encoding"]["y"]["title"])  # the axis says which way is better
    labels = [o for o in app.selectbox if o.label.endswith(": quantity")]
    assert len(labels) == len(SPECS)  # in words with the direction, not code names like mlp/cosine
    assert all(box.format_func(box.value) != box.value and "is better" in box.format_func(box.value) for box in labels)
    heat = next(s for s in specs if "concat" not in s and "layer" not in s)  # square cells, not stretched
    assert heat["mark"]["type"] == "rect" and heat["autosize"] == {"type": "pad"}
    assert heat["width"] == heat["height"] == {"step": charts.heat_cell(2, 4)}  # tiny-bert: 2 layers, 4 heads
    maps = next(s for s in specs if "concat" in s)
    raw, effective, null = maps["concat"]
    assert [m["title"] for m in (raw, effective, null)] == [f"{k}, layer 1, head 0" for k in
                                                            ("raw attention", "effective attention",
                                                             "null part (raw - effective)")]
    order = raw["encoding"]["x"]["sort"]
    assert order[0].startswith("0:") and [int(t.split(":")[0]) for t in order] == list(range(len(order)))
    assert raw["encoding"]["y"]["sort"] == order and raw["width"] == raw["height"]  # every token, square cells
    assert raw["encoding"]["color"]["scale"] == effective["encoding"]["color"]["scale"]  # one scale
    signed = null["encoding"]["color"]["scale"]
    assert signed["scheme"] == charts.DIVERGING and signed["domainMid"] == 0 and signed["domain"][0] == -signed["domain"][1]
    app.number_input[0].set_value(2).run()
    assert not app.exception


def test_a_control_whose_base_is_missing_says_so(results_dir, tmp_path, monkeypatch):
    root = tmp_path / "results"
    shutil.copytree(results_dir, root)
    for tree in ("cells", "summaries"):
        shutil.rmtree(root / tree / "tiny-bert")
    monkeypatch.setenv("IDSUITE_RESULTS", str(root))
    app = AppTest.from_file(APP, default_timeout=60).run()
    app.radio[0].set_value("Model").run()
    app.selectbox[0].set_value("tiny-bert-random-init").run()
    assert not app.exception
    assert app.caption[0].value == "A random-init control of tiny-bert. tiny-bert is not in these results."


def test_compare_view_shows_the_paired_difference_first_with_one_encoding(app):
    app.run()
    app.radio[0].set_value("Compare").run()
    assert not app.exception
    assert app.multiselect[0].value == ["tiny-bert", "tiny-bert-random-init"]
    assert len(_specs(app)) == len(PAIRED_SPECS) and not app.checkbox  # each model's curves: not built until opened
    app.session_state["curves"] = True  # the reader opens "Each model's curves"
    app.run()
    app.checkbox[0].check().run()
    specs = _specs(app)
    assert not app.exception and len(specs) == len(PAIRED_SPECS) + len(SPECS)  # differences, then curves
    differences, curves = specs[:len(PAIRED_SPECS)], specs[len(PAIRED_SPECS):]
    for chart in differences:  # the zero line, interval bars, points: one significance encoding everywhere
        zero, bars, points = chart["layer"]
        scale = points["encoding"]["color"]["scale"]
        assert scale == {"domain": list(charts.SIGNIFICANCE), "range": list(charts.SIGNIFICANCE.values())}
        assert bars["encoding"]["color"]["scale"] == scale
    assert curves[0]["layer"][0]["encoding"]["x"]["title"] == "layer / number of layers"
    text = " ".join(m.value for m in app.markdown)
    assert "**Own-token contribution** (last layer, higher is better)" in text
    assert f"too few for a 95% interval (fewer than {MIN_CLUSTERS})" in text  # two sentences
    assert "on 12 sentences — the interval" in text


def test_empty_results_give_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv("IDSUITE_RESULTS", str(tmp_path / "nothing"))
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception
    assert "No results" in app.info[0].value


def test_a_metric_stored_under_two_configurations_gets_a_selector(two_settings_dir, monkeypatch):
    monkeypatch.setenv("IDSUITE_RESULTS", str(two_settings_dir))
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception
    own = headline_label(SPECS.get("hidden_token_attribution"))
    before = _frame(app, own).set_index("model").loc["tiny-bert", own]
    selector = app.selectbox[0]
    assert selector.label == "Own-token contribution: configuration"
    assert selector.options == ["method=estimate", "method=exact"] and "method=estimate" in selector.value
    assert f"{len(SPECS) + 1} stored cell(s) of other configurations or older runs are not shown." in [
        c.value for c in app.caption]
    selector.set_value(Board(two_settings_dir).settings["hidden_token_attribution"][1]).run()
    after = _frame(app, own).set_index("model")
    assert not app.exception and after.loc["tiny-bert", own] != before and after.loc["tiny-llama", "status"] == "partial"


def test_context_mixing_view_shows_the_agreement_heat_maps_curves_and_matrices(app):
    app.run()
    app.radio[0].set_value("Context mixing").run()
    assert not app.exception
    specs = _specs(app)
    heat = [s for s in specs if "concat" not in s and _layers(s)[0]["mark"]["type"] == "rect"]
    assert len(heat) == 2  # last layer, mean over layers
    for chart in heat:  # whole model and measure names on the axes, never cut; dark = better
        encoding = _layers(chart)[0]["encoding"]
        assert encoding["x"]["axis"]["labelLimit"] == 0 and encoding["y"]["axis"]["labelLimit"] == 0
        assert encoding["color"]["scale"] == {"scheme": charts.SEQUENTIAL, "reverse": False}
        assert "dark = higher = better" in _layers(chart)[0]["title"]
        numbers = _layers(chart)[1]["encoding"]["color"]  # readable on both ends of the colour scale
        assert numbers["condition"]["value"] == "white" and numbers["value"] == "black"
    matrices = next(s for s in specs if "concat" in s)["concat"]
    assert [m["title"].rsplit(", layer", 1)[0] for m in matrices] == ["attribution", *(m.title for m in MEASURES)]
    assert len({json.dumps(m["encoding"]["color"]["scale"]) for m in matrices}) == 1  # one colour scale
    app.radio[1].set_value("one-layer Jacobian (local)").run()
    assert not app.exception
    app.radio[1].set_value("one-layer Jacobian (local)").run()
    app.selectbox[0].set_value("own_error").run()
    heat = [s for s in _specs(app) if "concat" not in s and _layers(s)[0]["mark"]["type"] == "rect"]
    assert heat and all(_layers(s)[0]["encoding"]["color"]["scale"]["reverse"] for s in heat)  # lower is better


def test_about_page_names_corpus_sample_sizes_and_every_metric(app):
    app.run()
    app.radio[0].set_value("About").run()
    assert not app.exception
    text = " ".join(m.value for m in app.markdown)
    assert "corpus tiny" in text and f"Below {MIN_CLUSTERS} sentences" in text
    assert all(f"**{spec.display_name}** (`{name}`)" in text for name, spec in SPECS.items())
