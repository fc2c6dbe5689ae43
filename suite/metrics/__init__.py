"""The metric battery; importing this package registers every metric in ``METRICS``."""

from suite.metrics.base import METRICS, MetricConfig, MetricSpec, RowBuffer, Variant, register
from suite.metrics import rank, effective, identifiability, attribution  # noqa: F401  (registration)

__all__ = ["METRICS", "MetricConfig", "MetricSpec", "RowBuffer", "Variant", "register"]
