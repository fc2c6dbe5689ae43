"""The sample of metrics that solve something costly per sequence: sequences taken one at a time
until the metric's target quantity is known to a stated precision (``SequentialSample``), for
metrics about the head size taken from both sides of it (``StraddlingSample``), and for metrics
whose cost grows with the model within a deterministic budget of operations (``CostBudget``).

A head's attention is identifiable for ``n <= d_h`` and not beyond (``rank_deficiency``), so a
metric that can afford only some sequences takes them from both sides of ``d_h``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import accumulate
from typing import Annotated

from pydantic import Field

from idsuite.suite.specs.base import MetricConfig
from idsuite.suite.uncertainty import MIN_CLUSTERS


class SequentialSample(MetricConfig):
    """Sequences measured one at a time until the 95% interval of the metric's target quantity is
    at most ``target_half_width`` wide on each side, after at least ``min_sequences`` (by default
    ``MIN_CLUSTERS``, the fewest sentences an interval is shown for) and at most ``max_sequences``
    (which wins where it is the smaller), or until the eligible sequences run out. The loop is
    ``idsuite.suite.metrics.base.sample_until_precise``."""

    min_sequences: Annotated[int, Field(ge=1)] = MIN_CLUSTERS
    max_sequences: Annotated[int, Field(ge=1)] = 48
    target_half_width: Annotated[float, Field(gt=0)] = 0.02

    def target_met(self, sampled: int, half_width: float) -> bool:
        """Whether ``sampled`` sequences whose target interval has ``half_width`` are enough (a NaN
        half-width, nothing measured, never is)."""
        return sampled >= self.min_sequences and half_width <= self.target_half_width

    def stop_note(self, sampled: int, eligible: int, target: str, half_width: float, budget: str | None = None) -> str:
        """The label's account of the sample's end: the ``target``'s reached half-width, the target,
        and why sampling stopped after ``sampled`` of ``eligible`` sequences (``budget``: why, where
        a ``CostBudget`` allowed only those)."""
        reason = ("the target interval was met" if self.target_met(sampled, half_width) else
                  "the corpus ran out of eligible sequences" if sampled == eligible else
                  budget if budget is not None else
                  f"max_sequences ({self.max_sequences}) was reached")
        return f"{target} +-{half_width:.3f} (target {self.target_half_width}); stopped because {reason}"


class StraddlingSample(SequentialSample):
    """Sequences of at most the token cap, in corpus order, alternating those longer than the head
    size d_h and those not, measured until the target's interval is narrow enough
    (``SequentialSample``). The cap is ``max_tokens`` where given, else ``ceil(max_tokens_per_head_size
    * d_h)``, so that the sample straddles d_h for every head size; longer sequences are left out and
    counted (none is truncated)."""

    max_tokens: Annotated[int, Field(ge=2, le=1 << 20)] | None = None
    max_tokens_per_head_size: Annotated[float, Field(gt=1, le=64)] = 2.5

    def token_cap(self, d_head: int) -> int:
        """The longest sequence sampled for a model with head size ``d_head``."""
        return self.max_tokens if self.max_tokens is not None else math.ceil(self.max_tokens_per_head_size * d_head)

    def cap_reason(self, d_head: int) -> str:
        """Where the cap comes from, in words."""
        if self.max_tokens is not None:
            return "max_tokens, set explicitly"
        return f"{self.max_tokens_per_head_size:g} x d_h = {d_head}, rounded up"

    def straddle_note(self, long: int, d_head: int) -> str:
        """Nothing when ``long`` sampled sequences are longer than d_h; else why the sample does not
        straddle the head size."""
        if long:
            return ""
        why = ("the cap is not above d_h" if self.token_cap(d_head) <= d_head else
               "the corpus, or the run's --max-tokens, has no longer sentence under the cap")
        return f"; none is longer than d_h, so the sample does not straddle the head size ({why})"

    def order(self, eligible: list[tuple[int, int]], d_head: int) -> list[tuple[int, int]]:
        """(sequence id, n) pairs in corpus order, alternating longer than d_h and not (longer
        first), so that any prefix straddles the head size; the rest of a stratum follows when the
        other runs out."""
        eligible = sorted(eligible)
        long = [e for e in eligible if e[1] > d_head]
        short = [e for e in eligible if e[1] <= d_head]
        out = []
        for i in range(max(len(long), len(short))):
            out += long[i : i + 1] + short[i : i + 1]
        return out


class CostBudget(MetricConfig):
    """A deterministic bound on what a sampled metric may spend on one model: sequences are taken in
    the sample's order while the rough floating-point operations of all taken
    (``idsuite.suite.hidden_token_attribution.sequence_flops``) stay within ``max_flops``; the first
    that would pass it ends the sample (none is skipped for a cheaper later one, so the sample's
    order, e.g. its balance about d_h, is kept). A count of operations, not a time: every machine
    takes the same sequences. The default, 2e15, keeps the whole default sample of MiniLM, mpnet,
    SmolLM2 and Gemma 3 and bounds what a larger model or a longer cap may spend; docs/metrics.md
    (hidden token attribution, cost budget) says what it buys and how long it takes."""

    max_flops: Annotated[float, Field(gt=0)] = 2e15

    def affordable(self, costs: Sequence[float]) -> int:
        """How many of the sequences, in order, fit within ``max_flops`` together, from each one's cost."""
        return sum(1 for total in accumulate(costs) if total <= self.max_flops)

    def budget_note(self, costs: Sequence[float]) -> str | None:
        """Why the sample ends where the budget does (None where every sequence of ``costs`` fits)."""
        taken = self.affordable(costs)
        if taken == len(costs):
            return None
        if taken == 0:
            return (f"the cost budget was reached: the first sequence alone would cost ~{costs[0]:.1e} floating-point "
                    f"operations, over max_flops = {self.max_flops:.1e}")
        spent = sum(costs[:taken])
        return (f"the cost budget was reached (max_flops = {self.max_flops:.1e} floating-point operations: "
                f"{taken} sequences cost ~{spent:.1e}, the next would add ~{costs[taken]:.1e})")
