"""Declaration of the effective attention metric (``A_eff = A_h U_h U_h^T`` against raw ``A_h``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from idsuite.suite.specs.base import MetricConfig, MetricSpec, Variant


class EffectiveAttentionConfig(MetricConfig):
    """``compute_dtype`` of the rank decision and projection (float64 by default; the divergence
    summaries are float32). The raw and effective maps of every layer and head are stored for one
    example sequence of at most ``map_max_tokens`` tokens (none if 0): the longest, so that it goes
    as far past the head size d_h as the corpus allows (its null space has n - d_h dimensions); ties
    go to the lowest corpus index."""

    compute_dtype: Literal["float64", "float32"] = "float64"
    map_max_tokens: Annotated[int, Field(ge=0)] = 96


def _mass_variants() -> dict[str, Variant]:
    out = {}
    for where in ("cls", "sep", "punct"):
        for kind in ("raw", "eff"):
            maps = "raw A" if kind == "raw" else "A_eff"
            out[f"mass_{where}_{kind}"] = Variant(f"mean attention mass per row on {where} positions, {maps}", "none",
                                                  unit="mass", per_head=True)
    return out


SPEC = MetricSpec(
    name="effective_attention",
    display_name="Null-space attention share",
    short_name="Null share",
    description="How much of raw attention A_h lies in the left null space of T_h (A_eff = A_h U_h U_h^T).",
    version=4,
    variants={
        "null_share": Variant("||A_null||_F / ||A_h||_F", "lower", (0, 1), "share", per_head=True, per_sequence=True),
        "pearson": Variant("mean Pearson correlation of raw and effective rows", "higher", (-1, 1), "r", per_head=True,
                           per_sequence=True),
        "argmax_change": Variant("share of rows whose arg-max position changes", "lower", (0, 1), "share", per_head=True,
                                 per_sequence=True),
        **_mass_variants(),
        "map_raw": Variant("example sequence: raw attention A_h[query, key]", "none", (0, 1), kind="map"),
        "map_eff": Variant("example sequence: effective attention A_eff[query, key]", "none", kind="map"),
        "token": Variant("example sequence: the token at position 'key' (in 'label')", "none", kind="label"),
    },
    headline="null_share",
    implementation="idsuite.suite.metrics.effective_attention:EffectiveAttentionMetric",
    config_type=EffectiveAttentionConfig,
    summary_variants=("null_share", "pearson", "argmax_change", "mass_sep_raw", "mass_sep_eff"),
    paper="Brunner et al. 2020, section 4.2",
)
