"""
Tests for the connection bounds of a L{KeycardSite} (issue 23, findings 2
and 9): the budget of connections not yet authenticated, shared with a PB
listener, and the newcomer that takes its group's oldest place; the
request deadline (slowloris), the idle bound, the login deadline; a line
over the limit; the 503 of a refused connection.  In memory, with a
L{Clock}.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.spread import pb
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from twisted_keycard.pb import (
    TOO_MANY,
    ConnectionBudget,
    ConnectionLimits,
    KeycardServerFactory,
)
from twisted_keycard.web import KeycardSite, ProxyTrust, SiteLimits
from twisted_keycard.web._site import REFUSAL_LINGER

from ._web import PASSWORD, WebApp, application
from .test_web_guard import basic, bearer

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


class HalfClosingTransport(StringTransport):
    """
    A transport that records C{loseWriteConnection}, as TCP's takes it.
    """

    writeClosed = False

    def loseWriteConnection(self) -> None:
        self.writeClosed = True


class Leaf(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"hello\n"


class SiteBudgetTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()

    def site(
        self,
        limits: SiteLimits = SiteLimits(),  # noqa: B008 - frozen
        budget: ConnectionBudget | None = None,
        resource: Resource | None = None,
    ) -> KeycardSite:
        return KeycardSite(
            resource if resource is not None else Leaf(),
            limits,
            budget=budget,
            reactor=self.clock,
            timeout=None,
        )

    def connect(
        self, site: KeycardSite, host: str = "192.0.2.1", transport: Any = None
    ) -> tuple[StringTransport, Any]:
        channel = site.buildProtocol(IPv4Address("TCP", host, 40000))
        transport = StringTransport() if transport is None else transport
        channel.makeConnection(transport)
        return transport, channel

    def budget(self, **limits: Any) -> ConnectionBudget:
        return ConnectionBudget(ConnectionLimits(**limits), self.clock)

    def test_slowloris(self) -> None:
        """
        A request head sent a byte every few seconds gets a 408 and is
        closed when the request deadline passes, counted from its first
        byte: the bytes do not extend it.
        """
        site = self.site(SiteLimits(requestTimeout=10.0, loginTimeout=None))
        transport, channel = self.connect(site)
        self.clock.advance(5)
        for byte in GET[:9]:
            channel.dataReceived(bytes([byte]))
            self.assertFalse(transport.disconnecting)
            self.clock.advance(1)
        self.clock.advance(0.99)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.01)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 "))
        self.assertTrue(transport.disconnecting)
        channel.connectionLost(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_slowBody(self) -> None:
        """
        The deadline covers the body too.
        """
        site = self.site(SiteLimits(requestTimeout=10.0, loginTimeout=None))
        transport, channel = self.connect(site)
        channel.dataReceived(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
        )
        for _ in range(9):
            self.clock.advance(1)
            channel.dataReceived(b"a")
        self.clock.advance(1)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 "))

    def test_idleBound(self) -> None:
        """
        A connection waits at most C{idleTimeout} for a request's first
        byte, after connecting and after each response; a whole request in
        time gets its answer and the wait starts again.
        """
        site = self.site(SiteLimits(idleTimeout=30.0, loginTimeout=None))
        transport, channel = self.connect(site)
        self.clock.advance(29)
        channel.dataReceived(GET)
        self.assertIn(b"hello", transport.value())
        self.clock.advance(29.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)

    def test_lineTooLong(self) -> None:
        """
        A header line (or request line) over the limit gets a 400, and the
        connection is closed at once.
        """
        for head in (
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 17 * 1024,
            b"GET /" + b"a" * 17 * 1024,
        ):
            transport, channel = self.connect(self.site())
            channel.dataReceived(head)
            self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 "))
            self.assertTrue(transport.disconnecting)

    def test_loginDeadline(self) -> None:
        """
        A connection none of whose requests was authenticated is closed at
        the login deadline, however many requests it sends.
        """
        site = self.site(SiteLimits(loginTimeout=10.0, idleTimeout=60.0))
        transport, channel = self.connect(site)
        for _ in range(3):
            channel.dataReceived(GET)
            self.clock.advance(3)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(site.budget.unauthenticated(), 1)
        channel.connectionLost(None)
        self.assertEqual(site.budget.unauthenticated(), 0)

    def test_perAddressEvictsOldest(self) -> None:
        """
        A newcomer from an address group at its cap aborts that group's
        oldest connection not yet authenticated and takes its place;
        another group's are untouched.
        """
        site = self.site(budget=self.budget(maxUnauthenticatedPerAddress=2))
        first, second, other, third = (
            self.connect(site, host)[0]
            for host in ("192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.1")
        )
        self.assertEqual(
            [t.disconnecting for t in (first, second, other, third)],
            [True, False, False, False],
        )
        self.assertTrue(first.disconnected)
        self.assertEqual(site.budget.unauthenticated("192.0.2.1"), 2)

    def test_trustedProxyUncapped(self) -> None:
        """
        A trusted reverse proxy's connections, which every client of the
        proxy shares, are not capped per address; only in all.
        """
        site = KeycardSite(
            Leaf(),
            budget=self.budget(maxUnauthenticatedPerAddress=2, maxUnauthenticated=5),
            proxies=ProxyTrust(["10.0.0.0/8"]),
            reactor=self.clock,
            timeout=None,
        )
        proxied = [self.connect(site, "10.0.0.1")[0] for _ in range(5)]
        self.assertEqual([t.disconnecting for t in proxied], [False] * 5)
        transport = HalfClosingTransport()
        self.connect(site, "10.0.0.1", transport)
        self.assertIn(b" 503 ", transport.value())
        direct = [self.connect(site, "192.0.2.1")[0] for _ in range(3)]
        self.assertEqual([t.disconnecting for t in direct], [True, False, False])
        self.assertEqual(site.budget.unauthenticated("10.0.0.1"), 3)

    def test_refused503(self) -> None:
        """
        A connection the budget refuses (full, and its group the largest)
        gets a 503 with C{Retry-After} and one line saying why; the sending
        side is closed, and the connection aborted after a moment if the
        client does not close it.
        """
        site = self.site(SiteLimits(retryAfter=7), self.budget(maxUnauthenticated=1))
        self.connect(site)
        transport = HalfClosingTransport()
        _, refused = self.connect(site, transport=transport)
        response = transport.value()
        self.assertTrue(response.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"))
        self.assertIn(b"\r\nRetry-After: 7\r\n", response)
        self.assertTrue(response.endswith(b"\r\n\r\n" + TOO_MANY.encode() + b"\n"))
        self.assertTrue(transport.writeClosed)
        refused.dataReceived(GET)
        self.assertEqual(transport.value(), response)
        self.clock.advance(REFUSAL_LINGER)
        self.assertTrue(transport.disconnected)
        self.assertEqual(site.budget.unauthenticated(), 1)

    def test_sharedWithPB(self) -> None:
        """
        One budget for both faces: idle HTTP connections from an address
        are closed for the PB connections that come after them from it, and
        PB connections are closed for newer HTTP ones.
        """
        budget = self.budget(maxUnauthenticatedPerAddress=2)
        site = self.site(budget=budget)
        factory = KeycardServerFactory(pb.Root(), clock=self.clock, budget=budget)
        http = [self.connect(site)[0] for _ in range(2)]
        brokers = []
        for _ in range(2):
            broker = factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1))
            pbTransport = StringTransport()
            broker.makeConnection(pbTransport)
            brokers.append(pbTransport)
        self.assertEqual([t.disconnected for t in http], [True, True])
        newer = self.connect(site)[0]
        self.assertFalse(newer.disconnecting)
        self.assertEqual([t.disconnecting for t in brokers], [True, False])
        self.assertEqual(budget.unauthenticated("192.0.2.1"), 2)


class AuthenticatedTests(SynchronousTestCase):
    def test_authenticatedLeavesBudget(self) -> None:
        """
        A connection one of whose requests the guard authenticated no
        longer counts in the budget, and outlives the login deadline.
        """
        app = WebApp.make()
        self.addCleanup(app.bouncer.stopService)
        reply = self.successResultOf(
            app.request(
                "POST",
                "https://example.com/token",
                basic("alice", PASSWORD),
            )
        )
        self.assertEqual(reply.code, 200, reply.body)
        token = json.loads(reply.body)["token"]
        site = KeycardSite(
            application(app.guard, app.realm),
            SiteLimits(loginTimeout=10.0, idleTimeout=None),
            reactor=app.clock,
            timeout=None,
        )
        stranger = StringTransport()
        site.buildProtocol(IPv4Address("TCP", "192.0.2.5", 1)).makeConnection(stranger)
        channel = site.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1))
        transport = StringTransport()
        channel.makeConnection(transport)
        self.assertEqual(site.budget.unauthenticated(), 2)
        header = "".join(f"{k}: {v}\r\n" for k, v in bearer(token).items())
        channel.dataReceived(
            b"GET /app/ HTTP/1.1\r\nHost: x\r\n" + header.encode() + b"\r\n"
        )
        self.assertIn(b"HTTP/1.1 200 ", transport.value())
        self.assertEqual(site.budget.unauthenticated(), 1)
        app.clock.advance(10)
        self.assertTrue(stranger.disconnecting)
        self.assertFalse(transport.disconnecting)
