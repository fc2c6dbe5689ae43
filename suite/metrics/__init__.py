"""The metric implementations (torch); their declarations are in ``idsuite.suite.specs``."""

from idsuite.suite.metrics.base import Metric, RowBuffer, metric_class

__all__ = ["Metric", "RowBuffer", "metric_class"]
