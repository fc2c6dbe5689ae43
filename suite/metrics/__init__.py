"""The metric battery; importing this package registers every metric in ``METRICS``."""

from suite.metrics import attribution, effective, identifiability, rank  # noqa: F401  (registration)
from suite.metrics.base import (
    METRICS,
    MetricConfig,
    MetricSpec,
    RowBuffer,
    Variant,
    register,
)

__all__ = ["METRICS", "MetricConfig", "MetricSpec", "RowBuffer", "Variant", "register"]
