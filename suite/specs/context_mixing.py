"""Declaration of the context-mixing metric: the measures people use instead of attention, scored
against Jacobian attribution layer by layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from idsuite.suite.specs.base import MetricSpec, Variant
from idsuite.suite.specs.sample import CostBudget, SequentialSample


@dataclass(frozen=True)
class Measure:
    """One context-mixing measure, declared once: the maths (``suite/context_mixing.py``,
    ``RAW_MATRICES[name]``), the variants below, the docs check and the cost benchmark all iterate
    ``MEASURES``. ``title``: what it is and who proposed it; ``rollout_identity``: rolled out as
    ``rownorm(M + I)`` (attention rollout); ``raw_product``: raw matrices multiplied, each product
    row-normalised for reporting (GlobEnc); ``needs_rerun``: re-runs the layer per token (value
    zeroing: only where the model's layer can be re-run)."""

    name: str
    title: str
    rollout_identity: bool = False
    raw_product: bool = False
    needs_rerun: bool = False


MEASURES: tuple[Measure, ...] = (
    Measure("attention", "raw attention (rolled out with the residual)", rollout_identity=True),
    Measure("norm", "Kobayashi et al. 2020 norm ||sum_h A f(x)||"),
    Measure("norm_resln", "Kobayashi et al. 2021 AttnResLn-N (pre-norm: AttnRes-N)"),
    Measure("globenc", "GlobEnc", raw_product=True),
    Measure("alti", "ALTI"),
    Measure("value_zeroing", "value zeroing", needs_rerun=True),
)
SCORES = {
    "spearman": ("mean over tokens of the Spearman correlation of the measure's row with the attribution row",
                 "higher", (-1, 1), "rho"),
    "top_agreement": ("share of tokens whose top contributor is the same", "higher", (0, 1), "share"),
    "own_error": ("mean absolute error of the own share M_ii against c_ii", "lower", (0, 1), "share"),
}

class ContextMixingConfig(SequentialSample, CostBudget):
    """Probe sequences of 3 to ``max_tokens`` tokens are scored in corpus order, one at a time, until
    the 95% interval of every measure's last-layer rolled-out Spearman score (``<measure>/spearman``)
    is at most ``target_half_width`` wide on each side (``SequentialSample``: after at least
    ``min_sequences``, at most ``max_sequences``); longer and shorter ones are left out and counted
    (none is truncated; the measures hold n x n x d tensors, hence the bound). Global scores compare
    each measure's rolled-out matrix with the attribution ``c^l`` (``reference``: exact block norms,
    or the estimator with ``probes`` directions; exact falls back to the estimator where it would
    cost more than ``exact_max_flops`` for the longest sequence that may be scored, and the rows'
    label says so); local scores compare each one-layer matrix with the one-layer Jacobian
    ``||d e_i^l / d e_j^(l-1)||_F``, estimated with ``probes`` directions per token. The sample ends
    where the model's cost budget does (``CostBudget``: a sequence costs its reference's products
    plus the one-layer estimates', ``idsuite.suite.hidden_token_attribution.sequence_flops``)."""

    max_sequences: Annotated[int, Field(ge=1)] = 24
    target_half_width: Annotated[float, Field(gt=0)] = 0.05
    max_tokens: Annotated[int, Field(ge=3, le=1024)] = 16
    reference: Literal["exact", "estimate"] = "exact"
    probes: Annotated[int, Field(ge=2)] = 8
    exact_max_flops: Annotated[float, Field(gt=0)] = 1e16


def _variants() -> dict[str, Variant]:
    out = {}
    for measure in MEASURES:
        for where, what in (("", "rolled out, against c^l"), (":local", "one layer, against the one-layer Jacobian")):
            for score, (text, direction, bounds, unit) in SCORES.items():
                out[f"{measure.name}{where}/{score}"] = Variant(f"{measure.title}, {what}: {text}", direction, bounds, unit)
        out[f"matrix:{measure.name}"] = Variant(f"example sequence: {measure.title}, rolled out, row query, column key",
                                                kind="map")
    out["matrix:attribution"] = Variant("example sequence: the attribution c^l it is scored against", kind="map")
    out["norm_resln/mixing_ratio"] = Variant("mean share of context in the attention block output (Kobayashi et al. "
                                             "2021)", "none", (0, 1), "share")
    out["scored_sequences"] = Variant("sequences scored; the label says which, the reference used (and why, where "
                                      "exact was too costly), the widest last-layer Spearman interval reached and "
                                      "why it stopped", "none", (0, None), "sequences", kind="count")
    out["skipped_sequences"] = Variant("probe sequences left out for being longer than max_tokens or shorter than 3 "
                                       "tokens (the label says how many of each)", "none", (0, None), "sequences",
                                       kind="count")
    return out


SPEC = MetricSpec(
    name="context_mixing",
    display_name="Context-mixing agreement",
    short_name="Mixing agr.",
    description="How well attention, norm-based, GlobEnc, ALTI and value-zeroing mixing matrices agree with "
    "Jacobian attribution, per layer (rolled out against c^l, and one layer against the one-layer Jacobian).",
    version=3,
    variants=_variants(),
    headline="alti/spearman",
    implementation="idsuite.suite.metrics.context_mixing:ContextMixingMetric",
    headline_layer="last",
    headline_best_of=tuple(f"{m.name}/spearman" for m in MEASURES),
    config_type=ContextMixingConfig,
    in_main_table=False,
    summary_variants=tuple(f"{m.name}/spearman" for m in MEASURES),
    paper="Abnar & Zuidema 2020; Kobayashi et al. 2020, 2021; Modarressi et al. 2022; Ferrando et al. 2022; "
          "Mohebbi et al. 2023",
)
