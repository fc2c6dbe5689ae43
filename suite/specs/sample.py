"""The sample of metrics that solve something costly per sequence: sequences straddling the head size.

A head's attention is identifiable for ``n <= d_h`` and not beyond (``rank_deficiency``), so a
metric that can afford only some sequences takes them from both sides of ``d_h``.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field

from idsuite.suite.specs.base import MetricConfig


class StraddlingSample(MetricConfig):
    """Sequences of at most the token cap, in corpus order, alternating those longer than the head
    size d_h and those not, until the 95% interval of the metric's target quantity is at most
    ``target_half_width`` wide on each side (after at least ``min_sequences``; at most
    ``max_sequences``). The cap is ``max_tokens`` where given, else ``ceil(max_tokens_per_head_size
    * d_h)``, so that the sample straddles d_h for every head size; longer sequences are left out and
    counted (none is truncated)."""

    max_tokens: Annotated[int, Field(ge=2, le=1 << 20)] | None = None
    max_tokens_per_head_size: Annotated[float, Field(gt=1, le=64)] = 2.5
    min_sequences: Annotated[int, Field(ge=1)] = 10
    max_sequences: Annotated[int, Field(ge=1)] = 48
    target_half_width: Annotated[float, Field(gt=0)] = 0.02

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
