"""
Prometheus metrics of a bouncer: what it decides, what it holds, and how
long its store takes, served over twisted.web.
"""

from twisted_keycard.bouncer._metrics import BouncerGauges, IBouncerMetrics, NoMetrics
from twisted_keycard.metrics._prometheus import PrometheusMetrics
from twisted_keycard.metrics._timing import timedStore
from twisted_keycard.metrics._web import MetricsPage, metricsSite

__all__ = [
    "BouncerGauges",
    "IBouncerMetrics",
    "MetricsPage",
    "NoMetrics",
    "PrometheusMetrics",
    "metricsSite",
    "timedStore",
]
