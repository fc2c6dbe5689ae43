"""Each view of the Streamlit app, run by Streamlit's AppTest on the fixture results."""

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from idsuite import leaderboard
from idsuite.leaderboard.data import PAIRED_SPECS, Board
from idsuite.suite.specs import SPECS

APP = str(Path(leaderboard.__file__).parent / "app.py")


@pytest.fixture
def app(results_dir, monkeypatch):
    monkeypatch.setenv("IDSUITE_RESULTS", str(results_dir))
    return AppTest.from_file(APP, default_timeout=60)


def test_leaderboard_view_lists_every_model_and_flags_failures(app):
    app.run()
    assert not app.exception
    table = app.dataframe[0].value
    assert sorted(table["model"]) == sorted(["tiny-bert", "tiny-bert-random-init", "tiny-llama", "tiny-partial", "broken-hub-model"])
    warnings = " ".join(w.value for w in app.warning)
    assert "broken-hub-model: failed" in warnings and "tiny-partial: partial" in warnings
    app.text_input[0].set_value("TINY-B").run()
    assert sorted(app.dataframe[0].value["model"]) == ["tiny-bert", "tiny-bert-random-init"]
    app.text_input[0].set_value("").run()
    app.multiselect[0].set_value(["llama"]).run()
    assert sorted(app.dataframe[0].value["model"]) == ["tiny-llama", "tiny-partial"]
    assert [b.label for b in app.get("download_button")] == ["Download CSV", "Download LaTeX"]


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
    assert len(specs) >= len(SPECS) + 1 + 3  # a curve per metric, a head heatmap, raw/effective/null maps
    assert all(layer.get("title") or spec.get("title") for spec in specs for layer in _layers(spec))  # titled
    curves = [s for s in specs if "layer" in s]
    assert len(curves) == len(SPECS)
    for curve in curves:  # a band, integer layer ticks; the control drawn wide and dashed beneath the model
        band, control, trained = curve["layer"]
        assert band["mark"]["type"] == "area" and band["encoding"]["y2"]["field"] == "ci_high"
        assert control["encoding"]["x"]["axis"] == {"format": "d", "tickMinStep": 1}
        assert control["mark"]["strokeDash"] and control["mark"]["strokeWidth"] > trained["mark"]["strokeWidth"]
        legend = control["encoding"]["color"]["legend"]
        assert legend["labelLimit"] == 0 and legend["symbolOpacity"] == 1  # full labels, colours as strong as the lines
    raw = next(s for s in specs if str(s.get("title", "")).startswith("raw attention"))
    order = raw["encoding"]["x"]["sort"]
    assert order[0].startswith("0:") and [int(t.split(":")[0]) for t in order] == list(range(len(order)))
    assert raw["encoding"]["y"]["sort"] == order
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


def test_compare_view_with_normalised_depth(app):
    app.run()
    app.radio[0].set_value("Compare").run()
    assert not app.exception
    assert app.multiselect[0].value == ["tiny-bert", "tiny-bert-random-init"]
    app.checkbox[0].check().run()
    specs = _specs(app)
    assert not app.exception and len(specs) == len(SPECS) + len(PAIRED_SPECS)  # curves, and paired differences
    assert all(s["layer"][0].get("title") or s["layer"][1].get("title") for s in specs)
    assert specs[0]["layer"][0]["encoding"]["x"]["title"] == "layer / L"
    captions = " ".join(c.value for c in app.caption)
    assert "Own-token contribution (own, last layer): " in captions and "sentences" in captions


def test_empty_results_give_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv("IDSUITE_RESULTS", str(tmp_path / "nothing"))
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception
    assert "No results" in app.info[0].value


def test_a_metric_stored_under_two_configurations_gets_a_selector(two_settings_dir, monkeypatch):
    monkeypatch.setenv("IDSUITE_RESULTS", str(two_settings_dir))
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception
    own = next(c for c in app.dataframe[0].value.columns if c.startswith("Own-token contribution"))
    before = app.dataframe[0].value.set_index("model").loc["tiny-bert", own]
    selector = app.selectbox[0]
    assert selector.label == "Own-token contribution: configuration"
    assert selector.options == ["method=estimate", "method=exact"] and "method=estimate" in selector.value
    assert f"{len(SPECS) + 1} stored cell(s) of other configurations or older runs are not shown." in [
        c.value for c in app.caption]
    selector.set_value(Board(two_settings_dir).settings["hidden_token_attribution"][1]).run()
    after = app.dataframe[0].value.set_index("model")
    assert not app.exception and after.loc["tiny-bert", own] != before and after.loc["tiny-llama", "status"] == "partial"


def test_context_mixing_view_shows_the_agreement_heat_maps_curves_and_matrices(app):
    app.run()
    app.radio[0].set_value("Context mixing").run()
    assert not app.exception
    specs = _specs(app)
    heat = [s for s in specs if str(_layers(s)[0].get("title", "")).startswith("spearman, ")]
    assert len(heat) == 2  # last layer, mean over layers
    for chart in heat:  # whole model and measure names on the axes, never cut
        encoding = _layers(chart)[0]["encoding"]
        assert encoding["x"]["axis"]["labelLimit"] == 0 and encoding["y"]["axis"]["labelLimit"] == 0
        numbers = _layers(chart)[1]["encoding"]["color"]  # readable on both ends of the colour scale
        assert numbers["condition"]["value"] == "white" and numbers["value"] == "black"
    assert any(str(s.get("title", "")).startswith("attribution, layer") for s in specs)  # the reference matrix
    assert len([s for s in specs if ", layer " in str(s.get("title", ""))]) == 7  # attribution + six measures
    app.radio[1].set_value("one-layer Jacobian (local)").run()
    assert not app.exception
