"""What ``idsuite run`` prints: per-layer tables from aggregated rows built by hand, and at 80
columns every block names its models and variants above their values."""

from __future__ import annotations

import pandas as pd
import pytest

from idsuite.cli.run_report import run_notes, run_tables
from idsuite.cli.tables import fit
from tests.results.test_headlines import aggregate


def test_printed_tables_show_each_layer_with_half_its_interval_and_notes_count_converged_fits():
    rows = pd.DataFrame([aggregate("m", "rank_deficiency", "nonidentifiable_share", layer, layer / 10, half=0.02)
                         for layer in (1, 2)]
                        + [aggregate("m", "token_identifiability", f"mlp/cosine@{layer}:converged", layer, float(ok))
                           for layer, ok in ((1, True), (2, False))]).assign(n_clusters=12)
    (title, table), = [t for t in run_tables(rows) if "rank_deficiency" in t[0]]
    assert table[("m", "nonidentifiable_share")].tolist() == ["0.100±0.020", "0.200±0.020"]
    # under the title: the variant in words with its direction, and the sentences behind the intervals
    assert title.splitlines()[1].startswith("  nonidentifiable_share: ") and "lower is better" in title.splitlines()[1]
    assert title.splitlines()[2] == "  on: m 12 sentences"
    assert "m: token_identifiability: 1 of 2 iterative fits converged" in "\n".join(run_notes(rows))


@pytest.mark.parametrize("width", [60, 80, 120])
def test_wrapped_tables_name_the_model_and_variant_above_every_value(width):
    # four models, two variants each; a value's text says whose it is: model k, variant v -> 0.kv0
    models = [f"some-model-{k}-of-a-zoo" for k in range(4)]
    rows = pd.DataFrame([aggregate(m, "rank_deficiency", v, layer, k / 10 + i / 100, half=0.0)
                         for k, m in enumerate(models) for i, v in enumerate(("nonidentifiable_share", "null_fraction"))
                         for layer in (1, 2)])
    (_, table), = [t for t in run_tables(rows) if "rank_deficiency" in t[0]]
    text = fit(table, width=width)
    blocks = text.split("\n\n")
    assert len(blocks) > 1 or width == 120
    seen = []
    for block in blocks:
        lines = block.splitlines()
        assert all(len(line) <= width for line in lines)
        owners, variants = lines[0].split()[1:], lines[1].split()[1:]  # after the index names
        assert len(owners) == len(variants)
        for row in lines[3:]:  # after the "layer" line
            values = row.split()[1:]
            assert len(values) == len(owners)
            for owner, variant, value in zip(owners, variants, values, strict=True):
                k, i = models.index(owner), ("nonidentifiable_share", "null_fraction").index(variant)
                assert value.split("±")[0] == f"{k / 10 + i / 100:.3f}", (owner, variant, value)
        seen += list(zip(owners, variants, strict=True))
    assert seen == list(table.columns)  # every column once, in order
