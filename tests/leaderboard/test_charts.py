"""The Altair chart specs on their own: head heat maps have square cells of a fixed size."""

import altair as alt
import numpy as np
import pandas as pd
import pytest

from idsuite.leaderboard import charts


def _grid(layers: int, heads: int) -> pd.DataFrame:
    values = np.arange(layers * heads, dtype=float).reshape(layers, heads)
    return pd.DataFrame(values, index=pd.Index(range(1, layers + 1), name="layer"),
                        columns=pd.Index(range(heads), name="head"))


@pytest.mark.parametrize(("layers", "heads", "cell"), [
    (12, 8, charts.HEAT_CELL),  # the fixed cell: 256 x 384 px
    (2, 2, charts.PLOT_HEIGHT / 2),  # two layers: cells grow until the plot is PLOT_HEIGHT tall
    (2, 4, charts.HEAT_WIDTH / 4),  # ... unless that is wider than HEAT_WIDTH
    (80, 64, charts.HEAT_WIDTH / 64),  # many heads: capped at HEAT_WIDTH, still square
])
def test_head_heat_map_cells_are_square_and_sized_by_the_grid_not_the_page(layers, heads, cell):
    with alt.data_transformers.disable_max_rows():  # as the app does: 80 x 64 cells are 5120 rows
        spec = charts.heatmap(_grid(layers, heads), "head", "layer", "a quantity", "higher").to_dict()
    assert spec["width"] == spec["height"] == {"step": cell}  # square, whatever the page's width
    assert spec["autosize"] == {"type": "pad"}  # not fitted (stretched) to the container
    assert heads * cell <= charts.HEAT_WIDTH + 1e-9
    assert layers * cell >= min(charts.PLOT_HEIGHT, charts.HEAT_WIDTH / heads * layers) - 1e-9
    assert spec["encoding"]["x"]["type"] == spec["encoding"]["y"]["type"] == "ordinal"  # a step per head and layer
