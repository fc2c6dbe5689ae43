"""Every metric's declaration in one registry, importable without torch (the leaderboard and the
command line read it; ``idsuite.suite.metrics.metric_class`` imports an implementation when a run needs it).

Adding a metric: a module here declaring its config and ``SPEC`` (with ``implementation``), one
line below, and the implementation in ``suite/metrics/``.
"""

from idsuite.suite.registry import Registry
from idsuite.suite.specs import (
    context_mixing,
    effective_attention,
    feasible_attention,
    hidden_token_attribution,
    rank_deficiency,
    token_identifiability,
)
from idsuite.suite.specs.base import MetricConfig, MetricSpec, Variant, VariantKind

SPECS: Registry[MetricSpec] = Registry("metric")
for _module in (rank_deficiency, effective_attention, feasible_attention, token_identifiability, hidden_token_attribution,
                context_mixing):
    SPECS.register(_module.SPEC.name, _module.SPEC)

__all__ = ["SPECS", "MetricConfig", "MetricSpec", "Variant", "VariantKind"]
