"""
A bouncer's metrics as Prometheus collectors, in a registry of its own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from zope.interface import implementer

from twisted_keycard.bouncer._metrics import (
    REASONS,
    RESULTS,
    BouncerGauges,
    IBouncerMetrics,
)
from twisted_keycard.metrics._timing import timedStore

_S = TypeVar("_S")

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
