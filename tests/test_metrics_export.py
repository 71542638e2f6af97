"""
Tests for what serves a bouncer's metrics: the timed store, the page, and
what C{twistd keycard-bouncer --metrics} adds, with no sockets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_keycard import MemoryStore
from twisted_keycard.metrics import MetricsPage, metricsSite, timedStore
from twisted_keycard.service._services import serveMetrics
from twisted_keycard.service._startup import StartupError
from twisted_keycard.store import (
    IKeycardStore,
    IKeyringStore,
    IRevocationStore,
    IssuedKeycard,
    IThrottleStore,
    ThrottleEvent,
    ThrottleShare,
)

from .test_metrics import KIND, Harness


class SlowStore(MemoryStore):
    """
    A store whose look-ups answer when the test says.
    """

    waiting: list[Deferred[IssuedKeycard | None]] = []

    def get(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        d: Deferred[IssuedKeycard | None] = Deferred()
        self.waiting.append(d)
        return d


@implementer(IThrottleStore)
class CountsOnly:
    """
    A store that only keeps throttle counts.
    """

    def shareThrottle(
        self, source: str, events: Sequence[ThrottleEvent], cursor: int, limit: int
    ) -> Deferred[ThrottleShare]:
        return succeed(ThrottleShare([], cursor))

    def flushFailures(self, before: float) -> Deferred[int]:
        return succeed(0)


class TimedStoreTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.seen: list[tuple[str, float]] = []

    def observe(self, method: str, seconds: float) -> None:
        self.seen.append((method, seconds))

    def test_sameInterfaces(self) -> None:
        store = MemoryStore()
        timed = timedStore(store, self.observe, self.clock.seconds)
        for interface in (IKeycardStore, IRevocationStore, IThrottleStore):
            self.assertTrue(interface.providedBy(timed))
            self.assertTrue(verifyObject(interface, timed))
        counts = timedStore(CountsOnly(), self.observe, self.clock.seconds)
        self.assertTrue(IThrottleStore.providedBy(counts))
        self.assertFalse(IKeycardStore.providedBy(counts))
        self.assertFalse(IKeyringStore.providedBy(counts))
        self.assertIn("MemoryStore", repr(timed))

    def test_untilFired(self) -> None:
        """
        A call is timed from the call until its L{Deferred} fires, with a
        result or a failure; other attributes are the store's own.
        """
        store = SlowStore()
        timed = timedStore(store, self.observe, self.clock.seconds)
        first = timed.get("a")
        second = timed.get("b")
        self.clock.advance(0.25)
        store.waiting[0].callback(None)
        self.clock.advance(0.5)
        store.waiting[1].errback(OSError("disk"))
        self.assertIsNone(self.successResultOf(first))
        self.failureResultOf(second, OSError)
        self.assertEqual(self.seen, [("get", 0.25), ("get", 0.75)])
        self.assertEqual(timed.waiting, store.waiting)

    def test_histogram(self) -> None:
        """
        A bouncer over a timed store fills the store latency histogram, by
        method.
        """
        h = Harness(self, timed=True)
        h.login()
        self.assertEqual(h.value("keycard_store_seconds_count", method="add"), 1)
        self.assertEqual(h.value("keycard_store_seconds_sum", method="add"), 0)


class PageTests(SynchronousTestCase):
    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        h = Harness(self)
        h.login()
        request: Any = DummyRequest([b""])
        if accept is not None:
            request.requestHeaders.setRawHeaders(b"accept", [accept.encode()])
        body = MetricsPage(h.registry).render_GET(request)
        (contentType,) = request.responseHeaders.getRawHeaders(b"content-type", [])
        return body, contentType.decode()

    def test_text(self) -> None:
        body, contentType = self.render()
        self.assertTrue(contentType.startswith("text/plain"))
        self.assertIn(
            f'keycard_logins_total{{kind="{KIND}",result="success"}} 1.0'.encode(),
            body,
        )

    def test_openMetrics(self) -> None:
        body, contentType = self.render("application/openmetrics-text; version=1.0.0")
        self.assertTrue(contentType.startswith("application/openmetrics-text"))
        self.assertTrue(body.endswith(b"# EOF\n"))

    def test_site(self) -> None:
        """
        The site serves the page at C{/metrics}.
        """
        site = metricsSite(CollectorRegistry())
        child = site.getResourceFor(DummyRequest([b"metrics"]))
        self.assertIsInstance(child, MetricsPage)


class ServiceMetricsTests(SynchronousTestCase):
    """
    What C{twistd keycard-bouncer --metrics} adds; served over real HTTP in
    L{tests.test_service_metrics}.
    """

    def test_listenerAndTimedStore(self) -> None:
        parent = MultiService()
        store = MemoryStore()
        metrics, timed = serveMetrics(
            MemoryReactorClock(), "tcp:0:interface=127.0.0.1", store, parent, "b"
        )
        self.assertEqual(len(list(parent)), 1)
        self.assertIsNot(timed, store)
        self.assertTrue(IRevocationStore.providedBy(timed))
        self.assertIsNotNone(
            metrics.registry.get_sample_value("process_start_time_seconds")
        )

    def test_badEndpoint(self) -> None:
        """
        An endpoint that cannot be parsed stops twistd with one line.
        """
        with self.assertRaises(StartupError) as caught:
            serveMetrics(
                MemoryReactorClock(), "bogus:9800", MemoryStore(), MultiService(), "b"
            )
        self.assertTrue(
            str(caught.exception).startswith("bad --metrics 'bogus:9800':"),
            str(caught.exception),
        )
