"""
Tests for the limits on connections of a L{KeycardServerFactory}
(L{ConnectionLimits}, applied by L{ConnectionGuard}): the login deadline,
the caps on connections not logged in, the budgets of messages before and
after login, the idle timeout, and the rationed log.  In memory, with a
L{Clock}.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.spread import banana, pb
from twisted.test.iosim import FakeTransport, connect
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard.error import KeycardDenied
from twisted_keycard.pb import TOO_MANY, ConnectionBudget
from twisted_keycard.pb._broker import (
    LOGIN_BUDGET,
    SESSION_BUDGET,
    ConnectionLimits,
    KeycardBroker,
    MessageBudget,
    refusalMessage,
)
from twisted_keycard.pb._client import KeycardClientFactory
from twisted_keycard.pb._serverfactory import ConnectionGuard, KeycardServerFactory
from twisted_keycard.testing import KeycardTestConnection, KeycardTestServer

from ._passphrase import PassphraseAnswerer, PassphraseChecker
from ._realm import AvatarRealm

SERVER = IPv4Address("TCP", "127.0.0.1", 8800)


def header(items: int) -> bytes:
    """
    The banana header of a list of C{items} items.
    """
    digits = bytearray()
    banana.int2b128(items, digits.extend)
    return bytes(digits) + banana.LIST


class LimitsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = KeycardTestServer.build(
            [PassphraseChecker({"alice": "wonderland"})],
            AvatarRealm(),
            duration=30 * 24 * 3600.0,
        )
        self.clock = self.server.clock
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)  # type: ignore[arg-type]

    def factory(self, **limits: Any) -> KeycardServerFactory:
        return KeycardServerFactory(
            self.server.root, limits=ConnectionLimits(**limits), clock=self.clock
        )

    def connect(
        self, factory: KeycardServerFactory, host: str = "192.0.2.1"
    ) -> KeycardTestConnection:
        """
        An in-memory client connection to C{factory}, from C{host}.
        """
        client = IPv4Address("TCP", host, 40000)
        server = factory.buildProtocol(client)
        assert server is not None
        clientFactory = KeycardClientFactory()
        broker = clientFactory.buildProtocol(SERVER)
        pump = connect(
            server,
            FakeTransport(server, True, SERVER, client),
            broker,
            FakeTransport(broker, False, client, SERVER),
            clock=self.clock,
        )
        return KeycardTestConnection(clientFactory, pump, server, broker)

    def login(self, connection: KeycardTestConnection) -> None:
        self.successResultOf(
            connection.login([PassphraseAnswerer("alice", "wonderland")])
        )

    def lines(self, text: str) -> list[LogEvent]:
        return [e for e in self.events if text in e.get("log_format", "")]

    def test_defaults(self) -> None:
        """
        A login deadline of 10 s, no idle timeout, 512 connections not
        logged in, 16 per address, 32 messages to log in, and the budgets.
        """
        limits = ConnectionLimits()
        self.assertEqual(limits.loginTimeout, 10.0)
        self.assertIsNone(limits.idleTimeout)
        self.assertEqual(
            (limits.maxUnauthenticated, limits.maxUnauthenticatedPerAddress), (512, 16)
        )
        self.assertEqual(limits.loginMessages, 32)
        self.assertEqual(limits.loginBudget, MessageBudget(65536, 1024, 32))
        self.assertEqual(limits.budget, MessageBudget(1048576, 131072, 512))

    def test_validated(self) -> None:
        for bad in (
            {"loginTimeout": 0},
            {"idleTimeout": -1.0},
            {"maxUnauthenticated": 0},
            {"loginMessages": "32"},
            {"logWindow": None},
        ):
            self.assertRaises(ValueError, ConnectionLimits, **bad)
        self.assertRaises(ValueError, MessageBudget, 1, 0, 1)
        self.assertRaises(ValueError, MessageBudget, True, 1, 1)
        ConnectionLimits(loginTimeout=None, maxUnauthenticated=None)

    def test_loginDeadline(self) -> None:
        """
        A connection that has not logged in when the deadline passes is
        dropped, with one warning; one that logged in stays.
        """
        factory = self.factory(loginTimeout=10.0)
        idle = self.connect(factory)
        busy = self.connect(factory, "192.0.2.2")
        self.login(busy)
        self.clock.advance(9.9)
        idle.flush()
        self.assertTrue(idle.connected)
        self.clock.advance(0.1)
        idle.flush()
        self.assertFalse(idle.connected)
        self.assertTrue(busy.connected)
        self.assertEqual(len(self.lines("no login within")), 1)
        self.assertEqual(factory.guard.unauthenticated(), 0)
        busy.disconnect()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_noDeadline(self) -> None:
        factory = self.factory(loginTimeout=None)
        connection = self.connect(factory)
        self.clock.advance(3600)
        connection.flush()
        self.assertTrue(connection.connected)

    def admitted(self, factory: KeycardServerFactory, host: str) -> bool:
        """
        Whether C{factory} admits a new connection from C{host} (IPv4 or
        IPv6); a refused one is told L{TOO_MANY} and closed.
        """
        address: IPv4Address | IPv6Address
        if ":" in host:
            address = IPv6Address("TCP", host, 1)
        else:
            address = IPv4Address("TCP", host, 1)
        broker = factory.buildProtocol(address)
        transport = StringTransport()
        broker.makeConnection(transport)
        if transport.disconnecting:
            self.assertEqual(transport.value(), refusalMessage(TOO_MANY))
            return False
        return True

    def test_perAddressEvictsOldest(self) -> None:
        """
        Past its cap, a client address's new connection closes that
        address's oldest connection not logged in and takes its place;
        other addresses are not affected, and an IPv6 /64 counts as one
        address.  A login frees the slot.
        """
        factory = self.factory(maxUnauthenticatedPerAddress=2)
        first = self.connect(factory)
        second = self.connect(factory)
        other = self.connect(factory, "192.0.2.9")
        third = self.connect(factory)
        for c in (first, second, other, third):
            c.flush()
        self.assertEqual(
            [c.connected for c in (first, second, other, third)],
            [False, True, True, True],
        )
        self.assertEqual(factory.guard.unauthenticated("192.0.2.1"), 2)
        self.assertEqual(len(self.lines("a newer one takes its place")), 1)
        self.login(second)
        self.assertEqual(factory.guard.unauthenticated("192.0.2.1"), 1)
        fourth = self.connect(factory)
        third.flush()
        self.assertTrue(third.connected and fourth.connected and second.connected)
        v6 = [self.connect(factory, h) for h in ("2001:db8::1", "2001:db8::ffff:2")]
        self.assertEqual(factory.guard.unauthenticated("2001:db8::/64"), 2)
        self.connect(factory, "2001:db8::3")
        v6[0].flush()
        self.assertEqual([c.connected for c in v6], [False, True])
        self.assertEqual(factory.guard.unauthenticated("2001:db8::/64"), 2)
        self.connect(factory, "2001:db8:0:1::1")
        self.assertEqual(factory.guard.unauthenticated("2001:db8:0:1::/64"), 1)

    def test_sameAddressLoginGetsIn(self) -> None:
        """
        Finding 9 of issue 23: a client address holding its cap of idle
        connections (some with unfinished messages) does not keep a real
        client from that address out: the newest connection logs in.
        """
        factory = self.factory()
        idle = [self.connect(factory, "127.0.0.1") for _ in range(60)]
        for c in idle[:6]:
            self.successResultOf(c.factory.getRootObject())
            c.serverBroker.dataReceived(header(3) + b"\x07")
        real = self.connect(factory, "127.0.0.1")
        self.login(real)
        self.assertTrue(real.connected)
        for c in idle:
            c.flush()
        self.assertEqual(sum(c.connected for c in idle), 15)
        self.assertEqual([c.connected for c in idle[-15:]], [True] * 15)

    def test_fullEvictsLargest(self) -> None:
        """
        When the server is full, a newcomer closes the oldest connection of
        the address that holds the most, as long as that address holds
        more than the newcomer's; else the newcomer is refused, and told
        so.
        """
        factory = self.factory(maxUnauthenticated=4, maxUnauthenticatedPerAddress=3)
        a = [self.connect(factory, "192.0.2.1") for _ in range(3)]
        self.connect(factory, "192.0.2.2")
        self.connect(factory, "192.0.2.3")
        a[0].flush()
        self.assertEqual([c.connected for c in a], [False, True, True])
        self.assertEqual(factory.guard.unauthenticated(), 4)
        # A newcomer from an address that holds as many as any is refused.
        self.assertFalse(self.admitted(factory, "192.0.2.1"))
        self.assertEqual(len(self.lines("server full")), 1)
        self.connect(factory, "192.0.2.4")
        a[1].flush()
        self.assertEqual([c.connected for c in a], [False, False, True])

    def test_refusedClientTold(self) -> None:
        """
        A keycard client refused for a cap fails its login with
        L{KeycardDenied} saying why, not with a lost connection.
        """
        factory = self.factory(maxUnauthenticated=1)
        self.connect(factory, "192.0.2.1")
        refused = self.connect(factory, "192.0.2.1")
        failure = self.failureResultOf(
            refused.login([PassphraseAnswerer("alice", "wonderland")]), KeycardDenied
        )
        self.assertEqual(str(failure.value), TOO_MANY)
        self.assertFalse(refused.connected)

    def test_sharedBudget(self) -> None:
        """
        Two factories given one L{ConnectionBudget} count their strangers
        together: one face's connections take the other's places.
        """
        budget = ConnectionBudget(
            ConnectionLimits(maxUnauthenticatedPerAddress=2), self.clock
        )
        one, two = (
            KeycardServerFactory(self.server.root, clock=self.clock, budget=budget)
            for _ in range(2)
        )
        old = self.connect(one)
        self.connect(two)
        self.assertEqual(budget.unauthenticated("192.0.2.1"), 2)
        self.connect(two)
        old.flush()
        self.assertFalse(old.connected)
        self.assertEqual(one.guard.unauthenticated(), 2)

    def test_fullEvictsOldest(self) -> None:
        """
        With every address holding one connection, a newcomer from a new
        address closes the oldest.
        """
        factory = self.factory(maxUnauthenticated=2)
        old = self.connect(factory, "192.0.2.1")
        self.clock.advance(1)
        new = self.connect(factory, "192.0.2.2")
        self.connect(factory, "192.0.2.3")
        old.flush()
        new.flush()
        self.assertEqual((old.connected, new.connected), (False, True))

    def test_budgetBeforeAndAfterLogin(self) -> None:
        """
        Before login, messages have the login budget, are counted, and fail
        quietly; after it, the session budget, and are not counted.
        """
        factory = self.factory(loginMessages=8)
        connection = self.connect(factory)
        broker = connection.serverBroker
        assert isinstance(broker, KeycardBroker)
        self.assertEqual(
            (broker.maxMessage, broker.maxObjects, broker.maxDepth),
            (LOGIN_BUDGET.bytes, LOGIN_BUDGET.objects, LOGIN_BUDGET.depth),
        )
        self.assertTrue(broker.quiet)
        self.login(connection)
        self.assertEqual(
            (broker.maxMessage, broker.maxObjects, broker.maxDepth),
            (SESSION_BUDGET.bytes, SESSION_BUDGET.objects, SESSION_BUDGET.depth),
        )
        self.assertIsNone(broker.maxMessages)
        self.assertFalse(broker.quiet)

    def test_objectsBeforeLogin(self) -> None:
        """
        A message of more items than the login budget drops the peer with
        one warning, from its first list header.
        """
        connection = self.connect(self.factory())
        self.successResultOf(connection.factory.getRootObject())
        connection.serverBroker.dataReceived(header(600_001) + b"\x80")
        connection.flush()
        self.assertFalse(connection.connected)
        self.assertEqual(len(self.lines("dropping")), 1)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_messagesBeforeLogin(self) -> None:
        """
        A peer that sends more messages than a login takes is dropped.
        """
        connection = self.connect(self.factory(loginMessages=6))
        root = self.successResultOf(connection.factory.getRootObject())
        # The dialect and the version are two messages: 4 calls are fine.
        calls = []
        for _ in range(5):
            calls.append(root.callRemote("keycardClasses"))
            connection.flush()
        self.assertFalse(connection.connected)
        for d in calls[:4]:
            self.successResultOf(d)
        self.failureResultOf(calls[4], pb.PBConnectionLost)
        self.assertEqual(len(self.lines("too many messages before login")), 1)

    def test_idleTimeout(self) -> None:
        """
        A logged-in connection that receives nothing for the idle timeout
        is closed; anything it receives starts the wait again.
        """
        factory = self.factory(idleTimeout=60.0)
        connection = self.connect(factory)
        self.login(connection)
        self.clock.advance(50)
        connection.serverBroker.dataReceived(b"")
        self.clock.advance(59)
        self.assertEqual(self.lines("silent for"), [])
        self.clock.advance(1)
        self.assertEqual(len(self.lines("silent for")), 1)
        connection.flush()
        self.assertFalse(connection.connected)
        self.assertEqual(self.guardCalls(), [])

    def guardCalls(self) -> list[object]:
        """
        The calls the guards of the test have scheduled.
        """
        return [
            call
            for call in self.clock.getDelayedCalls()
            if isinstance(
                getattr(cast(Any, call).func, "__self__", None), ConnectionGuard
            )
        ]

    def test_idleTimeoutOffByDefault(self) -> None:
        connection = self.connect(self.factory())
        self.login(connection)
        self.assertEqual(self.guardCalls(), [])
        self.clock.advance(7 * 24 * 3600)
        connection.flush()
        self.assertTrue(connection.connected)

    def test_logRationed(self) -> None:
        """
        Each client address gets at most C{logLines} lines per window; the
        next line allowed says how many were left out.
        """
        factory = self.factory(logLines=2, logWindow=60.0)
        guard = factory.guard
        for _ in range(5):
            guard.note("192.0.2.1", "refused {group}")
        guard.note("192.0.2.2", "refused {group}")
        self.assertEqual(len(self.lines("refused {group}")), 3)
        self.clock.advance(60)
        guard.note("192.0.2.1", "refused {group}")
        [last] = self.lines("not logged")
        self.assertEqual(last["suppressed"], 3)

    def test_maxMessageShorthand(self) -> None:
        """
        The factory's C{maxMessage} sets the session budget's bytes, and
        lowers the login budget's.
        """
        factory = KeycardServerFactory(self.server.root, 4096, clock=self.clock)
        self.assertEqual(factory.limits.budget.bytes, 4096)
        self.assertEqual(factory.limits.loginBudget.bytes, 4096)
        big = KeycardServerFactory(self.server.root, 10 * 2**20, clock=self.clock)
        self.assertEqual(big.limits.loginBudget.bytes, LOGIN_BUDGET.bytes)

    def test_refusedNeverBuilt(self) -> None:
        """
        A refused connection leaves nothing in the root: its broker only
        tells the client why, and reads nothing.
        """
        factory = self.factory(maxUnauthenticated=1)
        broker = factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1))
        broker.makeConnection(StringTransport())
        before = dict(self.server.root._connections)
        refused = factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 2))
        transport = StringTransport()
        refused.makeConnection(transport)
        refused.dataReceived(b"\x02\x82pb")
        self.assertEqual(transport.value(), refusalMessage(TOO_MANY))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.server.root._connections, before)
        self.assertEqual(factory.guard.unauthenticated(), 1)
        refused.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_otherRoot(self) -> None:
        """
        Under a root of another kind, the root tells the broker when its
        client has logged in; until then the connection is a stranger's.
        """
        factory = KeycardServerFactory(pb.Root(), clock=self.clock)
        broker = factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1))
        assert broker is not None
        transport = StringTransport()
        broker.makeConnection(transport)
        self.assertEqual(factory.guard.unauthenticated("192.0.2.1"), 1)
        broker.loggedIn()
        self.assertEqual(factory.guard.unauthenticated(), 0)
        self.clock.advance(3600)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class NoDelayTransport(StringTransport):
    """
    A transport that records C{setTcpNoDelay}, as a TCP transport takes it.
    """

    noDelay: bool | None = None

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = enabled


class NoDelayTests(SynchronousTestCase):
    def test_bothSides(self) -> None:
        """
        Server and client brokers turn Nagle's algorithm off on TCP, so an
        answer written a reactor turn after a small message is not held
        back until the peer acknowledges it; a transport without the
        option (in memory, UNIX) is left as it is.
        """
        server = KeycardServerFactory(pb.Root(), clock=Clock())
        for factory in [server, KeycardClientFactory()]:
            broker = factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1))
            assert broker is not None
            transport = NoDelayTransport()
            broker.makeConnection(transport)
            self.assertIs(transport.noDelay, True)
        plain = KeycardClientFactory().buildProtocol(None)
        plain.makeConnection(StringTransport())
        self.assertTrue(plain.connected)
