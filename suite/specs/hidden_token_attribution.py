"""Declaration of the hidden token attribution metric (contribution mixing from Jacobian blocks)."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field

from idsuite.suite.specs.base import MetricConfig, MetricSpec, Variant


class AttributionConfig(MetricConfig):
    """``method``: ``exact`` block norms cost ``n * d`` forward-mode products per sequence;
    ``estimate`` uses ``probes`` random directions per input token (``n * probes`` products) and its
    probe error joins every interval. Where exact block norms would cost more than
    ``exact_max_flops`` (a rough count, ``idsuite.suite.hidden_token_attribution.exact_flops``) for the longest sequence
    to attribute, the estimator is used instead and the rows' label says so.

    Sequences of at most the token cap are attributed in corpus order, alternating those longer
    than the head size d_h and those not, until the 95% interval of the last layer's mean own
    contribution is at most ``target_half_width`` wide on each side (after at least
    ``min_sequences``; at most ``max_sequences``). The cap is ``max_tokens`` where given, else
    ``ceil(max_tokens_per_head_size * d_h)``, so that the sample straddles d_h for every head size;
    longer sequences are left out and counted (none is truncated). ``chunk_size``: products per
    batch."""

    method: Literal["exact", "estimate"] = "estimate"
    probes: Annotated[int, Field(ge=2, le=65536)] = 8
    max_tokens: Annotated[int, Field(ge=2, le=1 << 20)] | None = None
    max_tokens_per_head_size: Annotated[float, Field(gt=1, le=64)] = 2.5
    min_sequences: Annotated[int, Field(ge=1)] = 10
    max_sequences: Annotated[int, Field(ge=1)] = 48
    target_half_width: Annotated[float, Field(gt=0)] = 0.02
    chunk_size: Annotated[int, Field(ge=1)] | None = None
    exact_max_flops: Annotated[float, Field(gt=0)] = 1e16

    def token_cap(self, d_head: int) -> int:
        """The longest sequence attributed for a model with head size ``d_head``."""
        return self.max_tokens if self.max_tokens is not None else math.ceil(self.max_tokens_per_head_size * d_head)

    def cap_reason(self, d_head: int) -> str:
        """Where the cap comes from, in words."""
        if self.max_tokens is not None:
            return "max_tokens, set explicitly"
        return f"{self.max_tokens_per_head_size:g} x d_h = {d_head}, rounded up"


SPEC = MetricSpec(
    name="hidden_token_attribution",
    display_name="Own-token contribution",
    description="c_ij^l = ||d e_i^l / d x_j||_F / sum_k ||d e_i^l / d x_k||_F: how much of token i's "
    "hidden state at layer l comes from its own input.",
    version=4,
    variants={
        "own": Variant("mean own contribution c_ii", "higher", (0, 1), "share", per_sequence=True),
        "own_is_top": Variant("share of tokens whose own input is the top contributor", "higher", (0, 1), "share",
                              per_sequence=True),
        "entropy": Variant("mean entropy of c_i. in nats (mixing)", "lower", (0, None), "nats", per_sequence=True),
        "offset": Variant("mean c_ij at relative offset j - i (variant 'offset:<k>')", "none", (0, 1), "share",
                          kind="offset"),
        "own_probe_error": Variant(
            "estimator only: half-width of the 95% probe-error interval of the mean own contribution (a jackknife "
            "over the probe directions; the interval of 'own' includes it)", "lower", (0, None), "share", kind="fit",
        ),
        "attributed_sequences": Variant("sequences attributed; the label says the token cap, how many of each "
                                        "length, the method used (and why, where exact was too costly) and why it "
                                        "stopped", "none", (0, None), "sequences", kind="count"),
        "skipped_sequences": Variant("probe sequences left out for being longer than the token cap (the label says "
                                     "the cap and where it comes from)", "none", (0, None), "sequences", kind="count"),
    },
    headline="own",
    implementation="idsuite.suite.metrics.hidden_token_attribution:AttributionMetric",
    headline_layer="last",
    config_type=AttributionConfig,
    summary_variants=("own", "own_is_top", "entropy"),
    paper="Brunner et al. 2020, section 6",
)
