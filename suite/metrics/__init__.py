"""The metric implementations (torch); their declarations are in ``suite.specs``."""

from suite.metrics.base import Metric, RowBuffer, metric_class

__all__ = ["Metric", "RowBuffer", "metric_class"]
