"""Declaration of the token identifiability metric (recovering ``x_i`` from ``e_i^l``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from idsuite.suite.specs.base import MetricConfig, MetricSpec, Variant

MAPPINGS = ("naive", "linear", "mlp")
DISTANCES = ("cosine", "l2")


class IdentifiabilityConfig(MetricConfig):
    """Mappings and distances to score, the train share of sentences, and how the MLPs train.

    ``max_train_tokens`` caps the tokens the linear and MLP mappings are fitted on (a seeded sample);
    ``heldout_fraction`` of the training sentences (not the scored ones) decide when an MLP stops
    (early stopping): the MLPs train by Adam (learning rate ``mlp_lr``) on minibatches of
    ``mlp_batch_size`` tokens, their held-out loss is checked after every epoch, and a map has
    converged when it has not improved by ``mlp_tolerance`` times its loss at the start for
    ``mlp_patience`` epochs; ``mlp_max_epochs`` caps the training. ``mlp_hidden_size``: the MLP's
    width (None: d); ``mlp_precision``: of the training's matrix products (bfloat16: the weights and
    losses stay float32). float32 by default: the fits then give the same maps on every machine, and
    bfloat16 is only faster where the processor multiplies bfloat16 natively (AVX-512 BF16, AMX, a
    GPU); on the 2-core AVX-512 Xeon without them that CI runs on, it made the fits 2.6x slower.
    """

    mappings: tuple[Literal["naive", "linear", "mlp"], ...] = MAPPINGS
    distances: tuple[Literal["cosine", "l2"], ...] = DISTANCES
    train_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.7
    heldout_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    max_train_tokens: Annotated[int, Field(ge=2)] = 1500
    mlp_hidden_size: Annotated[int, Field(ge=1)] | None = 256
    mlp_max_epochs: Annotated[int, Field(ge=1)] = 100
    mlp_batch_size: Annotated[int, Field(ge=1)] = 128
    mlp_patience: Annotated[int, Field(ge=1)] = 3
    mlp_tolerance: Annotated[float, Field(ge=0)] = 2e-2
    mlp_lr: Annotated[float, Field(gt=0)] = 5e-3
    mlp_precision: Literal["float32", "bfloat16"] = "float32"


SPEC = MetricSpec(
    name="token_identifiability",
    display_name="Token identifiability",
    short_name="Token ident.",
    description="Share of held-out tokens whose input embedding is recovered from the layer-l hidden state.",
    version=6,  # 6: the linear map applied in float32 (fitted in float64); the MLPs trained in float32 by default
    variants={
        **{f"{g}/{dist}": Variant(f"identifiability rate with g = {g}, {dist} distance", "higher", (0, 1), "rate",
                                  per_sequence=True)
           for g in MAPPINGS for dist in DISTANCES},
        **{f"mlp/{dist}:{what}": Variant(f"MLP map g for the {dist} distance: {text}", "none", unit=unit, kind="fit")
           for dist in DISTANCES
           for what, text, unit in (("train_loss", "training loss at the kept weights", "loss"),
                                    ("heldout_loss", "held-out loss at the kept weights (the lowest seen)", "loss"),
                                    ("epochs", "training epochs (passes over the training tokens) taken", "epochs"),
                                    ("converged", "1 if the held-out loss stopped improving before the epoch cap", "flag"))},
    },
    headline="mlp/cosine",
    implementation="idsuite.suite.metrics.token_identifiability:IdentifiabilityMetric",
    headline_layer="last",
    headline_best_of=tuple(f"{g}/{dist}" for g in MAPPINGS for dist in DISTANCES),
    config_type=IdentifiabilityConfig,
    summary_variants=tuple(f"{g}/{dist}" for dist in DISTANCES for g in MAPPINGS),
    paper="Brunner et al. 2020, section 5",
)
