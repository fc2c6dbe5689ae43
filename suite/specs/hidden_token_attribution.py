"""Declaration of the hidden token attribution metric (contributions of input tokens to hidden tokens, from Jacobian blocks)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from idsuite.suite.specs.base import MetricSpec, Variant
from idsuite.suite.specs.sample import CostBudget, StraddlingSample


class AttributionConfig(StraddlingSample, CostBudget):
    """``method``: ``exact`` block norms cost ``n * d`` forward-mode products per sequence;
    ``estimate`` uses ``probes`` random directions per input token (``n * probes`` products) and its
    probe error joins every interval. Where exact block norms would cost more than
    ``exact_max_flops`` (a rough count, ``idsuite.suite.hidden_token_attribution.sequence_flops``) for the longest sequence
    to attribute, the estimator is used instead and the rows' label says so.

    The sample (``StraddlingSample``): its target is the last layer's mean own contribution; it ends
    where the model's cost budget does (``CostBudget``: a 135M decoder's estimate at 160 tokens costs
    ~1.5e14 per sequence). ``chunk_size``: products per batch (default: ``products_per_batch``, by
    the sequence's size)."""

    method: Literal["exact", "estimate"] = "estimate"
    probes: Annotated[int, Field(ge=2, le=65536)] = 8
    chunk_size: Annotated[int, Field(ge=1)] | None = None
    exact_max_flops: Annotated[float, Field(gt=0)] = 1e16


SPEC = MetricSpec(
    name="hidden_token_attribution",
    display_name="Own-token contribution",
    short_name="Own token",
    description="c_ij^l = ||d e_i^l / d x_j||_F / sum_k ||d e_i^l / d x_k||_F: how much of token i's "
    "hidden state at layer l comes from its own input.",
    version=4,
    variants={
        "own": Variant("mean own contribution c_ii", "higher", (0, 1), "share", per_sequence=True),
        "own_is_top": Variant("share of tokens whose own input is the top contributor", "higher", (0, 1), "share",
                              per_sequence=True),
        "entropy": Variant("mean entropy of c_i. in nats (spread of the contributions)", "lower", (0, None), "nats", per_sequence=True),
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
