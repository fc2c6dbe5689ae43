"""The feasible-attention example on the model page: each stored weight with its interval."""

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from idsuite import leaderboard
from idsuite.leaderboard.data import Board
from idsuite.leaderboard.feasible_example import chart, example_rows

APP = str(Path(leaderboard.__file__).parent / "app.py")


def test_the_example_holds_every_allowed_key_of_its_last_row_with_its_interval(results_dir):
    board = Board(results_dir)
    for model in ("tiny-bert", "tiny-llama"):
        tokens, table = example_rows(board, model, layer=2, head=1)
        n = len(tokens)
        assert table["query"].unique().tolist() == [n - 1]  # example_rows = 1: the last row
        assert sorted(table["key"]) == list(range(n))  # the last row may use every key, encoder or decoder
        assert ((table["low"] <= table["weight"] + 1e-9) & (table["weight"] <= table["high"] + 1e-9)).all()
        assert abs(table["weight"].sum() - 1) < 1e-5 and n > 8  # a distribution, of a sentence longer than d_h = 8
        spec = chart(tokens, table, "t").to_dict()
        assert spec["title"] == "t" and len(spec["vconcat"]) == 1
    assert example_rows(board, "broken-hub-model", 1, 0) is None


def test_the_model_page_draws_the_intervals(results_dir, monkeypatch):
    monkeypatch.setenv("IDSUITE_RESULTS", str(results_dir))
    app = AppTest.from_file(APP, default_timeout=60).run()
    app.radio[0].set_value("Model").run()
    assert not app.exception
    specs = [json.loads(c.proto.spec) for c in app.get("vega_lite_chart")]
    feasible = [s for s in specs if str(s.get("title", "")).startswith("feasible intervals, layer 1, head 0")]
    assert len(feasible) == 1 and feasible[0]["vconcat"][0]["layer"][0]["mark"]["type"] == "rule"
