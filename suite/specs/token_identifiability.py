"""Declaration of the token identifiability metric (recovering ``x_i`` from ``e_i^l``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from suite.specs.base import MetricConfig, MetricSpec, Variant

MAPPINGS = ("naive", "linear", "mlp")
DISTANCES = ("cosine", "l2")


class IdentifiabilityConfig(MetricConfig):
    """Mappings and distances to score, the train share of sentences, and the MLP's training budget.

    ``max_train_tokens`` caps the tokens the linear and MLP mappings are fitted on (a seeded sample);
    ``mlp_hidden_size`` is the MLP's width (None: d).
    """

    mappings: tuple[Literal["naive", "linear", "mlp"], ...] = MAPPINGS
    distances: tuple[Literal["cosine", "l2"], ...] = DISTANCES
    train_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.7
    max_train_tokens: Annotated[int, Field(ge=2)] = 1500
    mlp_hidden_size: Annotated[int, Field(ge=1)] | None = 256
    mlp_steps: Annotated[int, Field(ge=1)] = 100
    mlp_lr: Annotated[float, Field(gt=0)] = 3e-3


SPEC = MetricSpec(
    name="token_identifiability",
    display_name="Token identifiability",
    description="Share of held-out tokens whose input embedding is recovered from the layer-l hidden state.",
    version=2,
    variants={
        f"{g}/{dist}": Variant(f"identifiability rate with g = {g}, {dist} distance", "higher", (0, 1), "rate")
        for g in MAPPINGS
        for dist in DISTANCES
    },
    headline="mlp/cosine",
    implementation="suite.metrics.identifiability:IdentifiabilityMetric",
    headline_layer="last",
    headline_best_of=tuple(f"{g}/{dist}" for g in MAPPINGS for dist in DISTANCES),
    config_type=IdentifiabilityConfig,
    summary_variants=tuple(f"{g}/{dist}" for dist in DISTANCES for g in MAPPINGS),
    paper="Brunner et al. 2020, section 5",
)
