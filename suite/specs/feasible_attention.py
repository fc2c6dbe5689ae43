"""Declaration of the feasible attention metric: how far each attention row can move, as a valid
distribution, without changing the head's output (``F_i``, ``suite/feasible_attention.py``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from idsuite.suite.specs.base import MetricSpec, Variant
from idsuite.suite.specs.sample import StraddlingSample


class FeasibleAttentionConfig(StraddlingSample):
    """The sample (``StraddlingSample``): its target is every layer's mean width of the top key's
    interval. In each sampled sequence ``rows_per_sequence`` query rows (drawn without replacement,
    seeded by the run's seed and the sequence; all rows of a shorter sequence) are solved for every
    layer and head: the intervals of their ``top_keys`` most-attended keys, their dimension and
    whether the most-attended key is identifiable. The example sequence (the shortest sampled one
    longer than d_h, of at most ``map_max_tokens`` tokens, else the longest; none if 0) stores, for
    every layer and head, its last ``example_rows`` rows with every key's interval."""

    min_sequences: Annotated[int, Field(ge=1)] = 16
    rows_per_sequence: Annotated[int, Field(ge=1)] = 4
    top_keys: Annotated[int, Field(ge=1)] = 1
    map_max_tokens: Annotated[int, Field(ge=0)] = 96
    example_rows: Annotated[int, Field(ge=1)] = 1


SPEC = MetricSpec(
    name="feasible_attention",
    display_name="Feasible top-key width",
    short_name="Top-key width",
    description="How far the most-attended key's weight can move over F_i = {a' >= 0, sum a' = 1, "
    "(a' - a_i) T_h = 0}: every valid attention row with the same head output.",
    version=1,
    variants={
        "top_width": Variant("mean over rows of max - min a'_j* over F_i (j*: the most-attended key)", "lower", (0, 1),
                             "weight", per_head=True, per_sequence=True),
        "top_identifiable": Variant("share of rows whose most-attended key no a' in F_i lets another key reach",
                                    "higher", (0, 1), "share", per_head=True, per_sequence=True),
        "dimension": Variant("mean over rows of dim F_i", "lower", (0, None), "dimensions", per_head=True,
                             per_sequence=True),
        "map_weight": Variant("example sequence, its last rows: the model's a_ij", "none", (0, 1), "weight",
                              kind="map"),
        "map_low": Variant("example sequence, its last rows: min a'_j over F_i", "none", (0, 1), "weight", kind="map"),
        "map_high": Variant("example sequence, its last rows: max a'_j over F_i", "none", (0, 1), "weight", kind="map"),
        "token": Variant("example sequence: the token at position 'key' (in 'label')", "none", kind="label"),
        "sampled_sequences": Variant("sequences solved; the label says the token cap, how many of each length, the "
                                     "rows and LPs solved and why it stopped", "none", (0, None), "sequences",
                                     kind="count"),
        "skipped_sequences": Variant("probe sequences left out for being longer than the token cap (the label says "
                                     "the cap and where it comes from)", "none", (0, None), "sequences", kind="count"),
    },
    headline="top_width",
    implementation="idsuite.suite.metrics.feasible_attention:FeasibleAttentionMetric",
    config_type=FeasibleAttentionConfig,
    summary_variants=("top_width", "top_identifiable", "dimension"),
    paper="beyond the paper: Sun & Marasovic 2021 (alternatives must be distributions)",
)
