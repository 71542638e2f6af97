"""
The service's metrics: a registry of their own, served on an endpoint.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from twisted.application.service import MultiService

from twisted_keycard.metrics._prometheus import PrometheusMetrics
from twisted_keycard.metrics._web import metricsSite
from twisted_keycard.service._endpoints import EndpointError, serverEndpoint
from twisted_keycard.service._startup import Listener, StartupError


def serveMetrics(
    reactor: Any, endpoint: str, store: Any, parent: MultiService, bouncerName: str
) -> tuple[PrometheusMetrics, Any]:
    """
    Metrics in a registry of their own (with the process's), served on
    C{endpoint}, and the store with its calls timed.

    @raise StartupError: if C{endpoint} is not a server endpoint; twistd
        then prints one line.
    """
    try:
        listening = serverEndpoint(reactor, endpoint, "--metrics")
    except EndpointError as e:
        raise StartupError(str(e)) from None
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    metrics = PrometheusMetrics(registry)
    site = metricsSite(registry)
    Listener(
        listening, site, endpoint, bouncerName, "metrics of bouncer"
    ).setServiceParent(parent)
    return metrics, metrics.timed(store)
