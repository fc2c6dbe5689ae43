"""Selection: one setting per metric (most models first), the newest cell per model, stale cells."""

import json

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
