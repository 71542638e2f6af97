"""
Prometheus metrics of a bouncer: what it decides, what it holds, and how
long its store takes, served over twisted.web.
"""

from twisted_keycard.bouncer import (
    BouncerGauges,
    IBouncerMetrics,
    NoMetrics,
)
from twisted_keycard.metrics._prometheus import (
    BouncerCollector,
    MetricsPage,
    PrometheusMetrics,
    metricsSite,
    timedStore,
)

__all__ = [
    "BouncerCollector",
    "BouncerGauges",
    "IBouncerMetrics",
    "MetricsPage",
    "NoMetrics",
    "PrometheusMetrics",
    "metricsSite",
    "timedStore",
]
