"""Declaration of the attention rank deficiency metric (``null_dim = n - rank(T_h)``)."""

from __future__ import annotations

from typing import Literal

from idsuite.suite.specs.base import MetricConfig, MetricSpec, Variant


class RankConfig(MetricConfig):
    """``compute_dtype``: float64 on the CPU (default); float32 on a GPU. Recorded with every cell."""

    compute_dtype: Literal["float64", "float32"] = "float64"


SPEC = MetricSpec(
    name="rank_deficiency",
    display_name="Non-identifiable heads",
    short_name="Non-ident. heads",
    description="Share of (sequence, head) pairs whose T_h = V_h W_O^h has a non-trivial left null space.",
    version=3,
    variants={
        "rank": Variant("numerical rank r_h of T_h, per sequence and head", "none", (0, None), "dimensions",
                        per_sequence=True, aggregated=False),
        "null_dim": Variant("n - r_h per sequence and head", "lower", (0, None), "dimensions", per_sequence=True,
                            aggregated=False),
        "nonidentifiable_share": Variant("share of (sequence, head) pairs with null_dim > 0", "lower", (0, 1), "share",
                                         per_head=True, per_sequence=True),
        "null_fraction": Variant(
            "mean over rows of row i's null dimension / its number of keys (null_dim / n for encoders)", "lower", (0, 1),
            "share", per_head=True, per_sequence=True,
        ),
    },
    headline="nonidentifiable_share",
    implementation="idsuite.suite.metrics.rank_deficiency:RankDeficiencyMetric",
    config_type=RankConfig,
    summary_variants=("nonidentifiable_share", "null_fraction"),
    paper="Brunner et al. 2020, section 4.1",
)
