"""Declaration of the hidden token attribution metric (contribution mixing from Jacobian blocks)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from suite.specs.base import MetricConfig, MetricSpec, Variant


class AttributionConfig(MetricConfig):
    """``method``: ``exact`` block norms cost ``n * d`` forward-mode products per sequence;
    ``estimate`` uses ``probes`` random directions per input token (``n * probes`` products) and
    reports its relative standard error. Runs on the first ``max_sequences`` probe sequences
    (corpus order) of at most ``max_tokens`` tokens. ``chunk_size``: products per batch."""

    method: Literal["exact", "estimate"] = "estimate"
    probes: Annotated[int, Field(ge=1, le=65536)] = 32
    max_sequences: Annotated[int, Field(ge=1)] = 2
    max_tokens: Annotated[int, Field(ge=2)] = 16
    chunk_size: Annotated[int, Field(ge=1)] | None = None


SPEC = MetricSpec(
    name="hidden_token_attribution",
    display_name="Own-token contribution",
    description="c_ij^l = ||d e_i^l / d x_j||_F / sum_k ||d e_i^l / d x_k||_F: how much of token i's "
    "hidden state at layer l comes from its own input.",
    version=2,
    variants={
        "own": Variant("mean own contribution c_ii", "higher", (0, 1), "share", per_sequence=True),
        "own_is_top": Variant("share of tokens whose own input is the top contributor", "higher", (0, 1), "share",
                              per_sequence=True),
        "entropy": Variant("mean entropy of c_i. in nats (mixing)", "lower", (0, None), "nats", per_sequence=True),
        "offset": Variant("mean c_ij at relative offset j - i (variant 'offset:<k>')", "none", (0, 1), "share",
                          kind="offset"),
        "own_rel_error": Variant(
            "estimator only: mean relative standard error of ||J_ii||_F (about that of c_ii)", "lower", (0, None),
            "relative error",
        ),
    },
    headline="own",
    implementation="suite.metrics.attribution:AttributionMetric",
    headline_layer="last",
    config_type=AttributionConfig,
    needs_model=True,
    summary_variants=("own", "own_is_top", "entropy"),
    paper="Brunner et al. 2020, section 6",
)
