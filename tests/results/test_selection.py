"""Selection: one setting per metric (most models first), the newest cell per model, stale cells."""

import json

from idsuite.results.identity import UNIDENTIFIED
from idsuite.results.query import ResultQuery
from idsuite.results.selection import ranked_settings, select, with_settings
from idsuite.suite.specs import SPECS
from tests.results.conftest import cell_frame


def test_newest_cell_of_the_most_common_setting_and_stale_flags(store):
    current = SPECS.get("rank_deficiency").version
    store.write(*cell_frame("a", timestamp="2026-01-01T00:00:00.000000+00:00"))
    store.write(*cell_frame("a", dtype="bfloat16", timestamp="2026-02-01T00:00:00.000000+00:00"))  # same setting, newer
    store.write(*cell_frame("b"))
    store.write(*cell_frame("b", seed=1))  # another setting, one model only
    store.write(*cell_frame("c", metric_version=current - 1))  # an older metric version: stale
    store.write(*cell_frame("b", metric_version=current - 1, dtype="float16",  # written later, by an older version
                            timestamp="2026-12-02T00:00:00.000000+00:00"))
    cells = with_settings(ResultQuery(store).cells())
    assert cells.loc[cells["model_id"] == "c", "stale"].all() and not cells.loc[cells["model_id"] != "c", "stale"].any()
    settings = ranked_settings(cells)["rank_deficiency"]
    assert len(settings) == 2 and "seed 0" in settings[0] and "seed 1" in settings[1]
    chosen = select(cells)
    assert chosen["model_id"].tolist() == ["a", "b", "c"] and chosen.loc[1, "metric_version"] == current
    assert chosen.loc[0, "dtype"] == "bfloat16"  # the newer of a's two cells
    other = select(cells, {"rank_deficiency": settings[1]})
    assert other["model_id"].tolist() == ["b"] and other.loc[0, "seed"] == 1
    assert json.loads(chosen.loc[0, "metric_config"]) == {"compute_dtype": "float64"}


def test_a_model_row_holds_one_set_of_weights_and_says_when_others_were_left_out(store):
    """Two metrics of one model: rank deficiency measured on weights A and then on weights B,
    identifiability on A only (an interrupted re-run). The newest weights (B) are the model's; its
    identifiability cell of A is left out, not mixed in, and the model is flagged. A failure whose
    weights could not be identified never supersedes them."""
    old, new = "hub:org/m@" + "a" * 40, "hub:org/m@" + "b" * 40
    store.write(*cell_frame("m", model_fingerprint=old, model_commit="a" * 40, timestamp="2026-01-01T00:00:00.000000+00:00"))
    store.write(*cell_frame("m", "token_identifiability", model_fingerprint=old, model_commit="a" * 40,
                            timestamp="2026-01-02T00:00:00.000000+00:00"))
    store.write(*cell_frame("m", model_fingerprint=new, model_commit="b" * 40, timestamp="2026-01-03T00:00:00.000000+00:00"))
    store.write(*cell_frame("m", "token_identifiability", model_fingerprint=UNIDENTIFIED, status="failed",
                            timestamp="2026-01-04T00:00:00.000000+00:00"))
    store.write(*cell_frame("steady"))
    chosen = select(with_settings(ResultQuery(store).cells()))
    m = chosen[chosen["model_id"] == "m"]
    assert m["metric"].tolist() == ["rank_deficiency"] and set(m["model_fingerprint"]) == {new}
    assert m["mixed_weights"].all()
    steady = chosen[chosen["model_id"] == "steady"]
    assert len(steady) == 1 and not steady["mixed_weights"].any()
    # once every metric is measured on B, nothing is left out
    store.write(*cell_frame("m", "token_identifiability", model_fingerprint=new, model_commit="b" * 40,
                            timestamp="2026-01-05T00:00:00.000000+00:00"))
    chosen = select(with_settings(ResultQuery(store).cells()))
    m = chosen[chosen["model_id"] == "m"]
    assert sorted(m["metric"]) == ["rank_deficiency", "token_identifiability"] and set(m["model_fingerprint"]) == {new}
    assert not m["mixed_weights"].any()


def test_a_model_known_only_by_failures_of_unidentified_weights_keeps_them(store):
    store.write(*cell_frame("offline", model_fingerprint=UNIDENTIFIED, status="failed"))
    chosen = select(with_settings(ResultQuery(store).cells()))
    assert chosen["model_id"].tolist() == ["offline"] and not chosen["ok"].any() and not chosen["mixed_weights"].any()
def test_a_cell_from_a_clock_that_runs_ahead_does_not_beat_a_newer_one(store):
    """Times read back never lie ahead of now or of the cell file's modification time (the file
    system's clock): the cell written second is the newest, whatever the first writer's clock said."""
    import pandas as pd

    now = pd.Timestamp.now(tz="UTC")
    ahead = (now + pd.Timedelta(days=1)).isoformat(timespec="microseconds")
    store.write(*cell_frame("a", dtype="bfloat16", timestamp=ahead))  # a host whose clock runs a day ahead
    correct = pd.Timestamp.now(tz="UTC").isoformat(timespec="microseconds")  # then a correct one, stamped as it writes
    store.write(*cell_frame("a", timestamp=correct))
    cells = ResultQuery(store).cells()
    assert (cells["written"] <= pd.Timestamp.now(tz="UTC")).all()
    assert select(cells).loc[0, "dtype"] == "float32"
