"""Each view of the Streamlit app, run by Streamlit's AppTest on the fixture results."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import leaderboard
from leaderboard.data import Board

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
    app.sidebar.text_input[0].set_value("TINY-B").run()
    assert sorted(app.dataframe[0].value["model"]) == ["tiny-bert", "tiny-bert-random-init"]
    app.sidebar.text_input[0].set_value("").run()
    app.sidebar.multiselect[0].set_value(["llama"]).run()
    assert sorted(app.dataframe[0].value["model"]) == ["tiny-llama", "tiny-partial"]
    assert [b.label for b in app.get("download_button")] == ["Download CSV", "Download LaTeX"]


def test_model_view_shows_curves_heatmaps_and_maps(app):
    app.run()
    app.sidebar.radio[0].set_value("Model").run()
    assert not app.exception
    assert app.selectbox[0].value == "tiny-bert"
    assert "tiny-bert-random-init" in app.caption[0].value
    charts = app.get("vega_lite_chart")
    assert len(charts) >= 4 + 1 + 3  # a curve per metric, a head heatmap, raw/effective/null maps
    app.number_input[0].set_value(2).run()
    assert not app.exception


def test_compare_view_with_normalised_depth(app):
    app.run()
    app.sidebar.radio[0].set_value("Compare").run()
    assert not app.exception
    assert app.multiselect[0].value == ["tiny-bert", "tiny-bert-random-init"]
    app.checkbox[0].check().run()
    assert not app.exception and len(app.get("vega_lite_chart")) == 4


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
    selector = app.sidebar.selectbox[0]
    assert selector.label == "Own-token contribution: configuration"
    assert selector.options == ["method=estimate", "method=exact"] and "method=estimate" in selector.value
    assert "5 stored cell(s) of other configurations or older runs are not shown." in [c.value for c in app.sidebar.caption]
    selector.set_value(Board(two_settings_dir).settings["hidden_token_attribution"][1]).run()
    after = app.dataframe[0].value.set_index("model")
    assert not app.exception and after.loc["tiny-bert", own] != before and after.loc["tiny-llama", "status"] == "partial"
