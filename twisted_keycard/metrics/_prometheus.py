"""
A bouncer's metrics as Prometheus collectors, in a registry of its own; a
proxy that times the calls made to a store; and serving the registry over
twisted.web for Prometheus to scrape.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from twisted.internet.defer import Deferred
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import directlyProvides, implementer, providedBy
from zope.interface.interface import Method

from twisted_keycard.bouncer import (
    REASONS,
    RESULTS,
    BouncerGauges,
    IBouncerMetrics,
)

_S = TypeVar("_S")
_T = TypeVar("_T")


def timedStore(
    store: _S, observe: Callable[[str, float], None], timer: Callable[[], float]
) -> _S:
    """
    A proxy of C{store} that provides the same interfaces and reports, for
    each call of a method of those interfaces, the method's name and the
    seconds from the call until its L{Deferred} fired (with a result or a
    failure).  Other attributes are the store's own.

    @param observe: called with the method's name and the seconds taken.
    @param timer: the time in seconds, read before and after each call.
    """
    return cast(_S, _TimedStore(store, observe, timer))


class _TimedStore:
    """
    See L{timedStore}.
    """

    def __init__(
        self,
        store: object,
        observe: Callable[[str, float], None],
        timer: Callable[[], float],
    ) -> None:
        provided = providedBy(store)
        self._store = store
        self._observe = observe
        self._timer = timer
        self._methods = {
            name
            for interface in provided.flattened()
            for name, description in interface.namesAndDescriptions(all=True)
            if isinstance(description, Method)
        }
        directlyProvides(self, provided)

    def __repr__(self) -> str:
        return f"<timed {self._store!r}>"

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if name not in self._methods or not callable(attribute):
            return attribute
        return self._timing(name, attribute)

    def _timing(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: object, **kwargs: object) -> Any:
            start = self._timer()
            result = method(*args, **kwargs)
            if isinstance(result, Deferred):

                def done(outcome: _T) -> _T:
                    self._observe(name, self._timer() - start)
                    return outcome

                result.addBoth(done)
            return result

        return call


#: Buckets of the delay between a revocation's recording and its reading,
#: around the default follow interval of one second.
DELAY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, math.inf)


@implementer(IBouncerMetrics)
class PrometheusMetrics:
    """
    Counters, gauges and histograms of one bouncer, registered in the
    registry given, so that several bouncers (and tests) in one process do
    not share them.  Pass it to the bouncer as its C{metrics}.

    @ivar registry: the L{CollectorRegistry} to serve.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        """
        @param registry: a registry no other L{PrometheusMetrics} uses.
        @param timer: seconds, for the latency of store calls.
        @raise ValueError: if the registry already holds these metrics.
        """
        self.registry = registry
        self.timer = timer
        self.logins = Counter(
            "keycard_logins",
            "Logins ended, by keycard kind and result.",
            ["kind", "result"],
            registry=registry,
        )
        self.refusals = Counter(
            "keycard_refusals",
            "Logins ended without a keycard, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in REASONS:
            self.refusals.labels(reason)
        self.throttled = Counter(
            "keycard_throttled",
            "Login attempts refused because of earlier failed logins.",
            registry=registry,
        )
        self.held = Gauge(
            "keycard_held", "Keycards held by clients.", registry=registry
        )
        self.pending = Gauge(
            "keycard_exchanges_pending",
            "Exchanges waiting for the client's answer.",
            registry=registry,
        )
        self.followLag = Gauge(
            "keycard_follow_lag_seconds",
            "Seconds since the revocations in the store were last read.",
            registry=registry,
        )
        self.revocations = Counter(
            "keycard_revocations_seen",
            "Revocations read from the store, whoever recorded them.",
            registry=registry,
        )
        self.revocationDelay = Histogram(
            "keycard_revocation_delay_seconds",
            "Seconds from a revocation's recording to its reading here.",
            buckets=DELAY_BUCKETS,
            registry=registry,
        )
        self.revokedHeldKeycards = Counter(
            "keycard_revoked_held",
            "Held keycards whose clients were dropped because of a revocation.",
            registry=registry,
        )
        self.storeLatency = Histogram(
            "keycard_store_seconds",
            "Seconds each store call took, by method.",
            ["method"],
            registry=registry,
        )

    def watch(self, gauges: BouncerGauges) -> None:
        for kind in gauges.kinds:
            for result in RESULTS:
                self.logins.labels(kind, result)
        self.held.set_function(gauges.held)
        self.pending.set_function(gauges.pending)

        def lag() -> float:
            seconds = gauges.followLag()
            return math.nan if seconds is None else seconds

        self.followLag.set_function(lag)

    def loginSucceeded(self, kind: str) -> None:
        self.logins.labels(kind, "success").inc()

    def loginFailed(self, kind: str, reason: str) -> None:
        result = REASONS.get(reason)
        if result is None:
            reason, result = "error", "error"
        self.logins.labels(kind, result).inc()
        self.refusals.labels(reason).inc()
        if reason == "throttled":
            self.throttled.inc()

    def revocationsSeen(self, delays: Sequence[float]) -> None:
        self.revocations.inc(len(delays))
        for delay in delays:
            self.revocationDelay.observe(max(delay, 0.0))

    def revokedHeld(self, count: int) -> None:
        self.revokedHeldKeycards.inc(count)

    def storeCall(self, method: str, seconds: float) -> None:
        """
        A call of the store's C{method} took C{seconds}, until its
        L{Deferred} fired.
        """
        self.storeLatency.labels(method).observe(seconds)

    def timed(self, store: _S) -> _S:
        """
        C{store}, with the time of each of its interfaces' calls recorded
        in the C{keycard_store_seconds} histogram.
        """
        return timedStore(store, self.storeCall, self.timer)


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
