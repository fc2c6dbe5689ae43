"""How a metric declares itself, once: its metadata, its variants and its config (no torch here).

The run, the results layer and the leaderboard all read these declarations; only the metric's
implementation (``MetricSpec.implementation``, imported on demand) needs torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pydantic

VariantKind = Literal["layer", "map", "label", "offset", "fit", "count"]
"""``layer``: one value per layer (a per-layer curve; rows aggregated over sequences and heads);
``map``: a cell (query, key) of the example sequence's attention map, per layer and head;
``label``: the example sequence's tokens (the text in ``label``, the position in ``key``);
``offset``: a family ``<name>:<k>`` of per-layer curves, one per relative offset k;
``fit``: a per-layer diagnostic of an iterative fit or an estimator (losses, epochs, whether it
converged, the estimator's own error);
``count``: how much data a metric used or left out (its ``label`` says what)."""


class MetricConfig(pydantic.BaseModel):
    """Base of every metric's settings; unknown keys are errors."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Variant:
    """One reported quantity of a metric: what it means, its unit, which way is better, and what
    rows it has (``kind``; ``per_head``: also aggregated per head, a layer x head matrix;
    ``per_sequence``: also one row per probe sequence, which paired comparisons resample;
    ``aggregated``: a ``layer`` variant has per-layer aggregates with their intervals, unless it is
    a table of per-sequence rows only). ``idsuite.suite.metrics.checks`` holds metrics to this."""

    description: str
    direction: Literal["higher", "lower", "none"] = "none"
    value_range: tuple[float | None, float | None] = (None, None)
    unit: str = ""
    kind: VariantKind = "layer"
    per_head: bool = False
    per_sequence: bool = False
    aggregated: bool = True


@dataclass(frozen=True)
class MetricSpec:
    """Metadata declared once; the run, the results layer and the leaderboard read it.

    ``headline`` names the variant shown as the model's one number and ``headline_layer`` how it is
    taken from the per-layer rows (``mean`` over layers or the ``last`` layer); with
    ``headline_best_of``, the best of those variants (by their direction) is shown instead.
    ``implementation``: ``module:Class`` of the accumulator (imported by ``idsuite.suite.metrics``).
    ``paper``: where the quantity is defined (for the docs and help texts); ``summary_variants``:
    what ``idsuite run`` prints per layer (default: the headline); ``in_main_table``: whether the
    leaderboard's main table has a column for it (else it has a view of its own); ``short_name``:
    a column title for a narrow paper table (default ``display_name``; the caption spells it out).
    """

    name: str
    display_name: str
    description: str
    version: int
    variants: dict[str, Variant]
    headline: str
    implementation: str
    headline_layer: Literal["mean", "last"] = "mean"
    headline_best_of: tuple[str, ...] = ()
    config_type: type[MetricConfig] = MetricConfig
    paper: str = ""
    summary_variants: tuple[str, ...] = ()
    in_main_table: bool = True
    short_name: str = ""

    @property
    def column_name(self) -> str:
        """``short_name``, else ``display_name``."""
        return self.short_name or self.display_name

    def variant(self, name: str) -> Variant:
        """The declaration of a stored variant name (``offset:+1`` belongs to the family ``offset``)."""
        return self.variants[name] if name in self.variants else self.variants[name.split(":", 1)[0]]

    def variants_of(self, *kinds: VariantKind) -> list[str]:
        """Declared variant names of the given kinds, in declaration order."""
        return [name for name, v in self.variants.items() if v.kind in kinds]

    def printed_variants(self) -> tuple[str, ...]:
        return self.summary_variants or (self.headline,)

    def headline_variant(self) -> Variant:
        return self.variants[self.headline_best_of[0] if self.headline_best_of else self.headline]
