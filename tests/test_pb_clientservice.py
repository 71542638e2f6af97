"""
Tests for L{keycardLogin} over a root from one's own factory, and for
L{KeycardClientService}: a login on every connection, retries with a
growing delay, and a stop on a server that cannot prove itself.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.spread import pb
from twisted.test.iosim import FakeTransport, IOPump, connect
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from twisted_keycard import (
    KeycardClientService,
    KeycardDenied,
    KeycardLogin,
    KeycardServerFactory,
    ServerAuthenticationFailed,
    keycardLogin,
)
from twisted_keycard.bouncer import TokenPolicy
from twisted_keycard.pb import reconnectPolicy
from twisted_keycard.scram import SCRAMAnswerer, SCRAMVerifiers, Verifier
from twisted_keycard.testing import KeycardTestServer
from twisted_keycard.tokens import TokenKeycard

from ._passphrase import PassphraseAnswerer, PassphraseChecker
from ._realm import AvatarRealm

SERVER = IPv4Address("TCP", "127.0.0.1", 8800)
CLIENT = IPv4Address("TCP", "127.0.0.1", 40000)


@implementer(IStreamClientEndpoint)
@attrs.define
class MemoryEndpoint:
    """
    Connects a factory to a L{KeycardTestServer} in memory; the test pumps
    the bytes with L{flush}.
    """

    server: KeycardTestServer
    refuse: bool = False
    pumps: list[IOPump] = attrs.field(factory=list)

    def connect(self, factory: IProtocolFactory) -> Deferred[Any]:
        if self.refuse:
            return fail(ConnectionRefusedError())
        serverFactory = KeycardServerFactory(self.server.root, clock=self.server.clock)
        serverBroker = serverFactory.buildProtocol(CLIENT)
        client = factory.buildProtocol(SERVER)
        assert serverBroker is not None and client is not None
        pump = connect(
            serverBroker,
            FakeTransport(serverBroker, True, SERVER, CLIENT),
            client,
            FakeTransport(client, False, CLIENT, SERVER),
            greet=False,
            clock=self.server.clock,
        )
        self.pumps.append(pump)
        return succeed(client)

    def flush(self) -> None:
        for pump in self.pumps:
            pump.flush()

    def dropAll(self) -> None:
        """
        Close every connection from the server's side.
        """
        for pump in self.pumps:
            pump.server.transport.loseConnection()
        self.flush()


class KeycardLoginTests(SynchronousTestCase):
    def test_ownFactory(self) -> None:
        """
        L{keycardLogin} logs in over the root object of a plain
        L{pb.PBClientFactory}'s connection.
        """
        server = KeycardTestServer.build(
            [PassphraseChecker({"alice": "wonderland"})], AvatarRealm()
        )
        serverBroker = KeycardServerFactory(server.root, clock=server.clock)
        broker = serverBroker.buildProtocol(CLIENT)
        factory = pb.PBClientFactory()
        client = factory.buildProtocol(SERVER)
        assert broker is not None
        pump = connect(
            broker,
            FakeTransport(broker, True, SERVER, CLIENT),
            client,
            FakeTransport(client, False, CLIENT, SERVER),
            clock=server.clock,
        )
        root = self.successResultOf(factory.getRootObject())
        d = keycardLogin(root, [PassphraseAnswerer("alice", "wonderland")], None)
        pump.flush()
        login = self.successResultOf(d)
        self.assertIsInstance(login, KeycardLogin)
        self.assertEqual(login.keycard.avatarId, "alice")
        whoami = login.perspective.callRemote("whoami")
        pump.flush()
        self.assertEqual(self.successResultOf(whoami), "alice")


class _DenyingRealm(AvatarRealm):
    """
    Refuses its first C{denials} avatars with C{error}.
    """

    def __init__(self, error: Exception, denials: int = 1) -> None:
        super().__init__()
        self.error = error
        self.denials = denials

    def requestAvatar(self, avatarId: Any, mind: object, *interfaces: Any) -> Any:
        if self.denials > 0:
            self.denials -= 1
            raise self.error
        return super().requestAvatar(avatarId, mind, *interfaces)


class ClientServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.realm = AvatarRealm()
        self.delays: list[int] = []

    def build(
        self,
        password: str = "wonderland",
        realm: AvatarRealm | None = None,
        tokens: TokenPolicy | None = None,
        reuseToken: bool = True,
    ) -> tuple[KeycardClientService, MemoryEndpoint, list[KeycardLogin]]:
        self.checker = PassphraseChecker({"alice": "wonderland"})
        self.server = KeycardTestServer.build(
            [self.checker],
            realm if realm is not None else self.realm,
            duration=60.0,
            tokens=tokens,
        )
        endpoint = MemoryEndpoint(self.server)
        logins: list[KeycardLogin] = []
        service = KeycardClientService(
            endpoint,
            [PassphraseAnswerer("alice", password)],
            logins.append,
            retryPolicy=self.policy,
            clock=self.server.clock,
            reuseToken=reuseToken,
        )
        return service, endpoint, logins

    def policy(self, failures: int) -> float:
        self.delays.append(failures)
        return 10.0 * failures

    def stop(self, service: KeycardClientService, endpoint: MemoryEndpoint) -> None:
        """
        Stop the service, and check that it leaves no timer behind.
        """
        stopped = service.stopService()
        endpoint.flush()
        self.successResultOf(stopped)
        self.assertEqual(
            [c for c in self.server.clock.getDelayedCalls() if c.active()], []
        )

    def test_logsIn(self) -> None:
        """
        On its first connection the service logs in and hands the login to
        C{onLogin}; C{whenLoggedIn} gives it too.
        """
        service, endpoint, logins = self.build()
        waiting = service.whenLoggedIn()
        service.startService()
        endpoint.flush()
        [login] = logins
        self.assertIs(self.successResultOf(waiting), login)
        self.assertIs(self.successResultOf(service.whenLoggedIn()), login)
        whoami = login.perspective.callRemote("whoami")
        endpoint.flush()
        self.assertEqual(self.successResultOf(whoami), "alice")
        self.stop(service, endpoint)

    def test_logsInAgainAfterLoss(self) -> None:
        """
        A lost connection is followed by a new one, after the policy's
        delay, and a new login with a new perspective.
        """
        service, endpoint, logins = self.build()
        service.startService()
        endpoint.flush()
        endpoint.dropAll()
        self.assertIsNone(service.current)
        self.assertEqual(self.delays, [1])
        self.server.clock.advance(10)
        endpoint.flush()
        first, second = logins
        self.assertIsNot(first.perspective, second.perspective)
        self.assertNotEqual(first.keycard.id, second.keycard.id)
        self.assertIs(service.current, second)
        self.stop(service, endpoint)

    def test_reconnectsWithToken(self) -> None:
        """
        After a lost connection the service logs in again with the token
        the server issued with the last keycard: no passphrase is checked,
        and the new keycard is a child of the last one.
        """
        service, endpoint, logins = self.build(tokens=TokenPolicy())
        service.startService()
        endpoint.flush()
        self.assertEqual(self.checker.checked, 1)
        endpoint.dropAll()
        self.server.clock.advance(10)
        endpoint.flush()
        first, second = logins
        self.assertIsInstance(second.keycard, TokenKeycard)
        self.assertEqual(second.keycard.avatarId, "alice")
        self.assertNotEqual(first.keycard.id, second.keycard.id)
        self.assertEqual(self.checker.checked, 1)
        whoami = second.perspective.callRemote("whoami")
        endpoint.flush()
        self.assertEqual(self.successResultOf(whoami), "alice")
        self.stop(service, endpoint)

    def test_refusedTokenFallsBack(self) -> None:
        """
        A token the server refuses (its keycard revoked) is followed, on
        the same connection, by the answerers; the refusal is not counted
        as a failed login.
        """
        service, endpoint, logins = self.build(tokens=TokenPolicy())
        service.startService()
        endpoint.flush()
        [first] = logins
        assert first.keycard.id is not None
        self.successResultOf(self.server.bouncer.revokeKeycardIds([first.keycard.id]))
        endpoint.flush()
        self.assertIsNone(service.current)
        self.server.clock.advance(10)
        endpoint.flush()
        self.assertEqual(len(endpoint.pumps), 2)
        second = logins[1]
        self.assertNotIsInstance(second.keycard, TokenKeycard)
        self.assertEqual(self.checker.checked, 2)
        self.assertEqual(self.delays, [1])
        self.stop(service, endpoint)

    def test_noTokenReuse(self) -> None:
        """
        With C{reuseToken=False} every connection logs in with the
        answerers.
        """
        service, endpoint, logins = self.build(tokens=TokenPolicy(), reuseToken=False)
        service.startService()
        endpoint.flush()
        endpoint.dropAll()
        self.server.clock.advance(10)
        endpoint.flush()
        self.assertEqual(len(logins), 2)
        self.assertEqual(self.checker.checked, 2)
        self.stop(service, endpoint)

    def test_refusedRetriesWithGrowingDelay(self) -> None:
        """
        A refused login closes the connection, and the next one comes after
        a delay that grows with each refusal in a row.
        """
        service, endpoint, logins = self.build(password="wrong")
        service.startService()
        endpoint.flush()
        for delay in (20, 30, 40):
            self.server.clock.advance(delay)
            endpoint.flush()
        self.assertEqual(self.delays, [2, 3, 4, 5])
        self.assertEqual(logins, [])
        self.assertEqual(len(endpoint.pumps), 4)
        self.assertTrue(service.running)
        self.stop(service, endpoint)

    def test_failedConnectionRetried(self) -> None:
        """
        A connection that fails is tried again, as L{ClientService} does.
        """
        service, endpoint, logins = self.build()
        endpoint.refuse = True
        service.startService()
        self.assertEqual(self.delays, [1])
        endpoint.refuse = False
        self.server.clock.advance(10)
        endpoint.flush()
        self.assertEqual(len(logins), 1)
        self.stop(service, endpoint)

    def test_deniedRetried(self) -> None:
        """
        A login the realm denies (L{KeycardDenied}) is tried again, and the
        delay starts afresh after a success.
        """
        realm = _DenyingRealm(KeycardDenied("not now"))
        service, endpoint, logins = self.build(realm=realm)
        service.startService()
        endpoint.flush()
        self.assertEqual(logins, [])
        self.server.clock.advance(20)
        endpoint.flush()
        self.assertEqual(len(logins), 1)
        endpoint.dropAll()
        self.assertEqual(self.delays, [2, 1])
        self.stop(service, endpoint)

    def test_realmErrorRetried(self) -> None:
        """
        An error of the realm's own (Buildbot's "duplicate worker") is tried
        again too.
        """
        realm = _DenyingRealm(RuntimeError("rejecting duplicate worker"))
        service, endpoint, logins = self.build(realm=realm)
        service.startService()
        endpoint.flush()
        self.server.clock.advance(20)
        endpoint.flush()
        self.assertEqual(len(logins), 1)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.stop(service, endpoint)

    def test_stopWhileLoggingIn(self) -> None:
        """
        Stopping the service during a login cancels it: whoever waits gets
        a L{CancelledError}, and no retry is left behind.
        """
        service, endpoint, logins = self.build()
        waiting = service.whenLoggedIn()
        service.startService()
        self.stop(service, endpoint)
        self.failureResultOf(waiting, CancelledError)
        self.assertEqual(logins, [])


class ServerProofTests(SynchronousTestCase):
    def test_serverCannotProveItself(self) -> None:
        """
        A server without the user's real server key fails the client's
        check of its signature: the service stops trying, and says why.
        """
        real = Verifier.fromPassword("wonderland")
        forged = attrs.evolve(real, serverKey=b"\x01" * 32)
        server = KeycardTestServer.build(
            [SCRAMVerifiers({"alice": forged})], AvatarRealm()
        )
        endpoint = MemoryEndpoint(server)
        logins: list[KeycardLogin] = []
        service = KeycardClientService(
            endpoint,
            [SCRAMAnswerer("alice", "wonderland")],
            logins.append,
            clock=server.clock,
        )
        service.startService()
        endpoint.flush()
        self.assertEqual(logins, [])
        failure = self.failureResultOf(
            service.whenLoggedIn(), ServerAuthenticationFailed
        )
        self.assertIs(failure, service.stoppedBy)
        self.assertEqual([c for c in server.clock.getDelayedCalls() if c.active()], [])
        self.assertEqual(len(endpoint.pumps), 1)
        self.successResultOf(service.stopService())


class ReconnectPolicyTests(SynchronousTestCase):
    def test_capped(self) -> None:
        """
        The default wait starts at a quarter of a second and doubles, up to
        three seconds, plus at most half a second of jitter (Twisted's
        default grows to a minute).
        """
        policy = reconnectPolicy()
        for attempt, base in [(0, 0.25), (1, 0.5), (3, 2.0), (4, 3.0), (60, 3.0)]:
            for _ in range(20):
                delay = policy(attempt)
                self.assertGreaterEqual(delay, base)
                self.assertLessEqual(delay, base + 0.5)
        self.assertLessEqual(reconnectPolicy(maxDelay=1.0)(100), 1.5)

    def test_badDelays(self) -> None:
        for maxDelay, initialDelay in [(0.0, 0.25), (5.0, 0.0), (1.0, 2.0)]:
            self.assertRaises(ValueError, reconnectPolicy, maxDelay, initialDelay)

    def test_serviceDefault(self) -> None:
        """
        L{KeycardClientService} waits by that policy unless given another.
        """
        server = KeycardTestServer.build(
            [PassphraseChecker({"alice": "wonderland"})], AvatarRealm()
        )
        clock = server.clock
        endpoint = MemoryEndpoint(server, refuse=True)
        service = KeycardClientService(
            endpoint, [PassphraseAnswerer("alice", "x")], clock=clock
        )
        service.startService()
        self.addCleanup(service.stopService)
        for _ in range(30):
            [delayed] = clock.getDelayedCalls()
            self.assertLessEqual(delayed.getTime() - clock.seconds(), 3.5)
            clock.advance(delayed.getTime() - clock.seconds())
