"""
A bouncer's metrics as Prometheus collectors, in a registry of its own; a
proxy that times the calls made to a store; and serving the registry over
twisted.web for Prometheus to scrape.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from twisted.copyright import version as twistedVersion
from twisted.internet.defer import Deferred
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import directlyProvides, implementer, providedBy
from zope.interface.interface import Method

from twisted_keycard._version import __version__
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


#: Buckets of the time the bouncer takes to answer a login message: from a
#: challenge sent at once to a password hash queued behind others.
ANSWER_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    math.inf,
)  # fmt: skip

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
        requesters: Collection[str] = (),
    ) -> None:
        """
        @param registry: a registry no other L{PrometheusMetrics} uses.
        @param timer: seconds, for the latency of store calls.
        @param requesters: the requester names shown one by one in
            C{keycard_requester_connected} (the configured ones: never a
            name a peer chose); others count only in the total.
        @raise ValueError: if the registry already holds these metrics.
        """
        self.registry = registry
        self.timer = timer
        self.requesters = frozenset(requesters)
        self._collector: BouncerCollector | None = None
        self.build = Info(
            "keycard_build",
            "The versions this bouncer runs.",
            registry=registry,
        )
        self.build.info(
            {
                "version": __version__,
                "python": platform.python_version(),
                "twisted": twistedVersion,
            }
        )
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
        self.answers = Histogram(
            "keycard_answer_seconds",
            "Seconds the bouncer took to answer each login message, by kind.",
            ["kind"],
            buckets=ANSWER_BUCKETS,
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
            self.answers.labels(kind)
            for result in RESULTS:
                self.logins.labels(kind, result)
        self.held.set_function(gauges.held)
        self.pending.set_function(gauges.pending)

        def lag() -> float:
            seconds = gauges.followLag()
            return math.nan if seconds is None else seconds

        self.followLag.set_function(lag)
        # As set_function does: the bouncer watched last is the one shown.
        if self._collector is not None:
            self.registry.unregister(self._collector)
        self._collector = BouncerCollector(gauges, self.requesters)
        self.registry.register(self._collector)

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

    def messageAnswered(self, kind: str, seconds: float) -> None:
        self.answers.labels(kind).observe(max(seconds, 0.0))

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


class BouncerCollector(Collector):
    """
    The gauges of a bouncer and its store that are read when a scrape
    collects them, with labels only from what the operator configured (seat
    pools, requester names) or the bouncer made (the signing key's public
    id): the key id label moves with a rotation, leaving no old series.
    """

    def __init__(self, gauges: BouncerGauges, requesters: Collection[str]) -> None:
        self.gauges = gauges
        self.requesters = sorted(requesters)

    def describe(self) -> list[Metric]:
        # Described as nothing, so that registering reads no gauge.
        return []

    def collect(self) -> Iterator[Metric]:
        g = self.gauges
        up = g.storeUp()
        if up is not None:
            yield _gauge(
                "keycard_store_up",
                "Whether the store works, as it last saw (1) or not (0).",
                int(up),
            )
        queued = g.writesQueued()
        if queued is not None:
            yield _gauge(
                "keycard_store_writes_queued",
                "Writes the store accepted and has not committed yet.",
                queued,
            )
        pools = g.seatPools()
        held = GaugeMetricFamily(
            "keycard_seat_pool_held",
            "Seats of the pool held by this bouncer's clients.",
            labels=["pool"],
        )
        size = GaugeMetricFamily(
            "keycard_seat_pool_size", "Seats in the pool.", labels=["pool"]
        )
        for pool, (taken, seats) in sorted(pools.items()):
            held.add_metric([pool], taken)
            size.add_metric([pool], seats)
        yield held
        yield size
        mostHeld = GaugeMetricFamily(
            "keycard_seat_pool_avatar_max_held",
            "The most seats of the pool one avatar holds through this bouncer.",
            labels=["pool"],
        )
        share = GaugeMetricFamily(
            "keycard_seat_pool_seats_per_avatar",
            "Seats of the pool one avatar may hold (--seats-per-avatar).",
            labels=["pool"],
        )
        for pool, (most, cap) in sorted(g.seatShares().items()):
            mostHeld.add_metric([pool], most)
            if cap is not None:
                share.add_metric([pool], cap)
        yield mostHeld
        yield share
        refused = CounterMetricFamily(
            "keycard_seat_pool_refusals",
            "Keycards this bouncer was refused a seat of the pool, by the limit"
            " reached: pool (full), seats-per-avatar, avatar (--max-per-avatar).",
            labels=["pool", "limit"],
        )
        for pool, counts in sorted(g.seatRefusals().items()):
            for limit in ("pool", "seats-per-avatar", "avatar"):
                refused.add_metric([pool, limit], counts.get(limit, 0))
        yield refused
        waiting = GaugeMetricFamily(
            "keycard_seat_queue_waiting",
            "Clients waiting for a seat of the pool through this bouncer.",
            labels=["pool"],
        )
        bound = GaugeMetricFamily(
            "keycard_seat_queue_size",
            "Clients the pool's queue holds at most (--seat-queue).",
            labels=["pool"],
        )
        longest = GaugeMetricFamily(
            "keycard_seat_queue_longest_wait_seconds",
            "The longest wait so far of the clients waiting through this"
            " bouncer, since each was first queued.",
            labels=["pool"],
        )
        for pool, (count, most, wait) in sorted(g.seatQueues().items()):
            waiting.add_metric([pool], count)
            bound.add_metric([pool], most)
            longest.add_metric([pool], wait)
        yield waiting
        yield bound
        yield longest
        lease = g.lease()
        yield _gauge(
            "keycard_lease_active",
            "Whether this bouncer holds its lease in the store.",
            int(lease is not None),
        )
        if lease is not None:
            keycards, left = lease
            yield _gauge(
                "keycard_lease_keycards",
                "Keycards held under this bouncer's lease.",
                keycards,
            )
            yield _gauge(
                "keycard_lease_remaining_seconds",
                "Seconds before the lease runs out unless renewed.",
                left,
            )
        registered = set(g.requesters())
        yield _gauge(
            "keycard_requesters_connected",
            "Requesters registered with the bouncer now, of any name.",
            len(registered),
        )
        connected = GaugeMetricFamily(
            "keycard_requester_connected",
            "Whether each configured requester is registered now.",
            labels=["requester"],
        )
        for name in self.requesters:
            connected.add_metric([name], int(name in registered))
        yield connected
        key = g.signingKey()
        if key is not None:
            kid, age = key
            info = InfoMetricFamily(
                "keycard_signing_key",
                "The id of the key that signs tokens now.",
                labels=[],
            )
            info.add_metric([], {"kid": kid})
            yield info
            yield _gauge(
                "keycard_signing_key_age_seconds",
                "Seconds since the key that signs tokens was made.",
                age,
            )
        records = g.failureRecords()
        if records is not None:
            yield _gauge(
                "keycard_throttle_records",
                "Accounts and address groups the throttle counts in memory.",
                records,
            )
        if g.failureRecordsMax is not None:
            yield _gauge(
                "keycard_throttle_records_max",
                "The most accounts and address groups the throttle counts.",
                g.failureRecordsMax,
            )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


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
