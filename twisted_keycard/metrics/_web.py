"""
Serving a registry's metrics over twisted.web, for Prometheus to scrape.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site


class MetricsPage(Resource):
    """
    A registry's metrics in the format the scraper asks for (Prometheus
    text, or OpenMetrics).  Collected on the reactor thread, where the
    bouncer's gauges may be read.
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        accept = request.getHeader(b"accept")
        encoder, contentType = choose_encoder(
            accept.decode("latin-1") if accept else ""
        )
        request.setHeader(  # type: ignore[no-untyped-call]
            b"content-type", contentType.encode("ascii")
        )
        return encoder(self.registry)


class _QuietSite(Site):
    """
    A site that writes no access log line: a scrape every few seconds would
    fill the bouncer's log.
    """

    def log(self, request: http.Request) -> None:
        pass


def metricsSite(registry: CollectorRegistry) -> Site:
    """
    A site serving C{registry} at C{/metrics}, as Prometheus expects.
    """
    root = Resource()  # type: ignore[no-untyped-call]
    root.putChild(b"metrics", MetricsPage(registry))
    site = _QuietSite(root)  # type: ignore[no-untyped-call]
    site.noisy = False
    return site
