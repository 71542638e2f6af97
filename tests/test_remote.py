"""
Tests for L{twisted_keycard.remote}: a requester using a bouncer in another
"process", all in memory on a L{MemoryReactorClock}.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.portal import Portal
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.test.iosim import ConnectionCompleter, IOPump
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import (
    Bouncer,
    KeycardDenied,
    KeycardRoot,
    KeycardServerFactory,
    MemoryStore,
)
from twisted_keycard.bouncer._revocation import Revoker
from twisted_keycard.pb._root import NOT_READY
from twisted_keycard.remote import BouncerRealm, RemoteBouncer
from twisted_keycard.remote._bouncerside import BouncerPerspective
from twisted_keycard.testing import KeycardTestConnection, connectToRoot

from ._passphrase import (
    PassphraseAnswerer,
    PassphraseChecker,
    PassphraseKeycard,
    sendFirst,
)
from ._realm import AvatarRealm

PORT = 4321
SECRETS = {"alice": "wonderland", "req1": "requester-secret", "mallory": "x"}


class RemoteBouncerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.store = MemoryStore()
        self.startBouncer()
        self.remote = RemoteBouncer(
            TCP4ClientEndpoint(self.reactor, "127.0.0.1", PORT),
            [PassphraseAnswerer("req1", SECRETS["req1"])],
            clock=self.reactor,
            retryPolicy=lambda attempt: 1.0,
        )
        self.realm = AvatarRealm()
        self.root = KeycardRoot(self.remote, Portal(self.realm), "req1")
        self.remote.startService()
        self.addCleanup(self.remote.stopService)
        self.pumps: list[IOPump] = []
        self.completeConnection()

    def startBouncer(self) -> None:
        self.bouncer = Bouncer(
            [PassphraseChecker(SECRETS)], self.store, clock=self.reactor, duration=60
        )
        self.bouncerRealm = BouncerRealm(
            self.bouncer, {"req1"}, self.reactor, requesterTimeout=30
        )
        serviceRoot = KeycardRoot(self.bouncer, Portal(self.bouncerRealm), "service")
        self.reactor.tcpServers.clear()
        self.reactor.listenTCP(
            PORT, KeycardServerFactory(serviceRoot, clock=self.reactor)
        )

    def stopBouncer(self) -> None:
        """
        The bouncer service's process ends: its timers with it.
        """
        self.bouncer.stopService()
        self.bouncerRealm.stop()

    def completeConnection(self) -> None:
        pump = ConnectionCompleter(self.reactor).succeedOnce()
        assert pump is not None
        self.pumps.append(pump)
        self.flush()

    def flush(self, *connections: KeycardTestConnection) -> None:
        pumps = self.pumps + [c.pump for c in connections]
        for _ in range(100):
            moved = [p.pump() for p in pumps]  # every pump, no short cut
            if not any(moved):
                return
        raise AssertionError("still pumping")

    def client(self) -> KeycardTestConnection:
        connection = connectToRoot(self.root, self.reactor)
        self.flush(connection)
        return connection

    def login(self, connection: KeycardTestConnection) -> str:
        d = connection.factory.loginWithKeycard(
            [PassphraseAnswerer("alice", "wonderland")]
        )
        self.flush(connection)
        keycardId = self.successResultOf(d).keycard.id
        assert keycardId is not None
        return keycardId

    def test_loginThroughRemoteBouncer(self) -> None:
        connection = self.client()
        keycardId = self.login(connection)
        self.assertEqual(self.bouncer.held[keycardId].requesterName, "req1")
        self.assertEqual(self.root.keycardIds(), [keycardId])

    def test_refusedThroughRemoteBouncer(self) -> None:
        connection = self.client()
        d = connection.factory.login([PassphraseAnswerer("alice", "nope")])
        self.flush(connection)
        self.assertEqual(self.failureResultOf(d).getErrorMessage(), "keycard refused")

    def test_notARequester(self) -> None:
        """
        An avatar that is not a named requester cannot use the bouncer.
        """
        remote = RemoteBouncer(
            TCP4ClientEndpoint(self.reactor, "127.0.0.1", PORT),
            [PassphraseAnswerer("mallory", "x")],
            clock=self.reactor,
        )
        remote.startService()
        self.addCleanup(remote.stopService)
        self.completeConnection()
        self.assertEqual(remote.keycardClasses, ())
        d = remote.keepAlive("mallory", [])
        self.failureResultOf(d, KeycardDenied)

    def newRemote(self) -> RemoteBouncer:
        """
        The requester again, with the default reconnection policy, not
        connected yet (the first one stopped: the bouncer takes one
        connection per requester).
        """
        self.remote.stopService()
        self.flush()
        self.pumps.clear()
        remote = RemoteBouncer(
            TCP4ClientEndpoint(self.reactor, "127.0.0.1", PORT),
            [PassphraseAnswerer("req1", SECRETS["req1"])],
            clock=self.reactor,
        )
        remote.startService()
        self.addCleanup(remote.stopService)
        return remote

    def test_notReachableYet(self) -> None:
        """
        Before the requester first reaches its bouncer, a client is told
        to try again later, not that its kinds are not taken (issue 24);
        C{whenConnected} fires once it has logged in.
        """
        remote = self.newRemote()
        root = KeycardRoot(remote, Portal(self.realm), "req1")
        connection = connectToRoot(root, self.reactor)
        self.flush(connection)
        d = connection.factory.login([PassphraseAnswerer("alice", "wonderland")])
        self.flush(connection)
        failure = self.failureResultOf(d, KeycardDenied)
        self.assertEqual(failure.getErrorMessage(), NOT_READY)
        connected = remote.whenConnected()
        self.assertNoResult(connected)
        self.completeConnection()
        self.assertIsNone(self.successResultOf(connected))
        self.assertIsNone(self.successResultOf(remote.whenConnected()))
        d = connection.factory.login([PassphraseAnswerer("alice", "wonderland")])
        self.flush(connection)
        self.successResultOf(d)

    def test_stopWhileLoggingIn(self) -> None:
        """
        Stopping while the requester logs in is quiet (issue 24: Automat's
        C{NoTransition}), and whoever waits in C{whenConnected} gets a
        L{CancelledError}.
        """
        remote = self.newRemote()
        connected = remote.whenConnected()
        # Connected, and the login's first message not delivered yet.
        pump = ConnectionCompleter(self.reactor).succeedOnce(greet=False)
        assert pump is not None
        stopped = remote.stopService()
        self.failureResultOf(connected, CancelledError)
        pump.pump()
        self.successResultOf(stopped)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_backInSeconds(self) -> None:
        """
        By default a requester tries again within a few seconds, however
        long its bouncer was away (Twisted's default waits up to a minute).
        """
        remote = self.newRemote()
        for _ in range(30):
            before = set(self.reactor.getDelayedCalls())
            ConnectionCompleter(self.reactor).failOnce()
            [delayed] = set(self.reactor.getDelayedCalls()) - before
            self.assertLessEqual(delayed.getTime() - self.reactor.seconds(), 3.5)
            self.reactor.advance(delayed.getTime() - self.reactor.seconds())
        self.completeConnection()
        self.successResultOf(remote.whenConnected())

    def test_refusedLoginBacksOff(self) -> None:
        """
        A requester whose login is refused closes that connection and
        tries again after a backoff that grows with each refusal.
        """
        attempts: list[int] = []

        def policy(attempt: int) -> float:
            attempts.append(attempt)
            return 5.0

        remote = RemoteBouncer(
            TCP4ClientEndpoint(self.reactor, "127.0.0.1", PORT),
            [PassphraseAnswerer("req1", "wrong")],
            clock=self.reactor,
            retryPolicy=policy,
        )
        remote.startService()
        self.addCleanup(remote.stopService)
        self.completeConnection()
        self.assertEqual(attempts, [1])
        self.assertTrue(self.pumps[-1].clientIO.disconnected)
        self.reactor.advance(5)
        self.completeConnection()
        self.assertEqual(attempts, [1, 2])
        self.assertIsNone(remote._perspective)

    def test_expiryReachesClient(self) -> None:
        connection = self.client()
        keycardId = self.login(connection)
        d = self.bouncer.expireKeycardIds([keycardId])
        self.flush(connection)
        self.assertEqual(self.successResultOf(d), 1)
        self.assertFalse(connection.connected)

    def test_clientLeaving(self) -> None:
        connection = self.client()
        keycardId = self.login(connection)
        connection.factory.disconnect()
        self.flush(connection)
        self.assertNotIn(keycardId, self.bouncer.held)
        self.assertIsNone(self.successResultOf(self.store.get(keycardId)))

    def advance(self, seconds: int, *connections: KeycardTestConnection) -> None:
        """
        Move time a second at a time, delivering what each side wrote.
        """
        for _ in range(seconds):
            self.reactor.advance(1)
            self.flush(*connections)

    def dropRequester(self) -> None:
        """
        The requester's connection to the bouncer service breaks.
        """
        for pump in self.pumps:
            pump.serverIO.loseConnection()
        self.flush()
        self.pumps.clear()

    def test_bouncerRestart(self) -> None:
        """
        The bouncer service restarts; the requester reconnects after its
        backoff, resends the ids its clients hold, and the new bouncer
        renews them, and drops the client when it expires one.
        """
        connection = self.client()
        keycardId = self.login(connection)
        self.dropRequester()
        self.stopBouncer()
        self.startBouncer()
        self.assertTrue(connection.connected)
        self.reactor.advance(1.0)
        self.completeConnection()
        self.assertIn(keycardId, self.bouncer.held)
        self.advance(200, connection)
        self.assertTrue(connection.connected)
        self.assertEqual(self.bouncer.held[keycardId].expires, 260.0)
        d = self.bouncer.expireKeycardIds([keycardId])
        self.flush(connection)
        self.assertEqual(self.successResultOf(d), 1)
        self.assertFalse(connection.connected)

    def test_requesterStaysConnected(self) -> None:
        """
        The requester's own keycard is renewed by the service's listener
        while its connection lives: long past the service's duration it is
        still connected, on its first connection, and its clients log in.
        """
        perspective = self.remote._perspective
        assert perspective is not None
        self.advance(600)
        self.assertIs(self.remote._perspective, perspective)
        self.assertFalse(perspective.broker.disconnected)
        connection = self.client()
        keycardId = self.login(connection)
        self.assertEqual(self.bouncer.held[keycardId].requesterName, "req1")

    def test_clientRenewedThroughRemote(self) -> None:
        """
        The requester renews its clients' keycards through the remote
        bouncer while they stay connected.
        """
        connection = self.client()
        keycardId = self.login(connection)
        self.advance(600, connection)
        self.assertTrue(connection.connected)
        self.assertEqual(self.bouncer.held[keycardId].expires, 660.0)

    def test_revokedWhileAway(self) -> None:
        """
        A keycard revoked while the requester was disconnected: the bouncer
        does not take it back when the requester reconnects, and the
        requester drops its client at once.
        """
        connection = self.client()
        keycardId = self.login(connection)
        other = self.client()
        otherId = self.login(other)
        self.dropRequester()
        self.successResultOf(self.bouncer.revokeKeycardIds([keycardId]))
        self.flush(connection, other)
        self.assertTrue(connection.connected)
        self.reactor.advance(1.0)
        self.completeConnection()
        self.flush(connection, other)
        self.assertFalse(connection.connected)
        self.assertTrue(other.connected)
        self.assertIn(otherId, self.bouncer.held)

    def test_expiredWhileAway(self) -> None:
        """
        A requester that stays away past its timeout, and whose keycards
        therefore expired, drops their clients as soon as it reconnects.
        """
        connection = self.client()
        self.login(connection)
        self.dropRequester()
        self.advance(31, connection)
        self.assertTrue(connection.connected)
        self.completeConnection()
        self.flush(connection)
        self.assertFalse(connection.connected)

    def test_longOutageSpreadsDrops(self) -> None:
        """
        After an outage that cost the requester its keycards, their clients
        are dropped over C{dropSpread} seconds, not at once; one revoked
        while the requester was away is dropped at once.
        """
        connections = [self.client() for _ in range(5)]
        ids = [self.login(c) for c in connections]
        self.dropRequester()
        self.advance(31, *connections)
        self.successResultOf(self.bouncer.revokeKeycardIds([ids[0]]))
        self.assertTrue(all(c.connected for c in connections))
        self.completeConnection()
        self.flush(*connections)
        # The revoked one at once; of the four others, one each 7.5 s, the
        # first at once, the last at 22.5 s.
        self.assertFalse(connections[0].connected)
        self.assertEqual(self.remote.dropSpread, 30.0)
        self.assertEqual(sum(c.connected for c in connections), 3)
        self.reactor.advance(7)
        self.flush(*connections)
        self.assertEqual(sum(c.connected for c in connections), 3)
        self.reactor.advance(15)
        self.flush(*connections)
        self.assertEqual(sum(c.connected for c in connections), 1)
        self.reactor.advance(0.5)
        self.flush(*connections)
        self.assertFalse(any(c.connected for c in connections))
        self.assertEqual(self.remote._spread, [])

    def loggedInThenLost(self, count: int) -> list[KeycardTestConnection]:
        """
        C{count} clients log in; the requester is away past its timeout,
        which costs it their keycards, then reconnects.
        """
        connections = [self.client() for _ in range(count)]
        for c in connections:
            self.login(c)
        self.dropRequester()
        self.advance(31, *connections)
        self.completeConnection()
        self.flush(*connections)
        return connections

    def test_spreadCancelledAtStop(self) -> None:
        """
        Stopping the requester cancels the drops still to come.
        """
        connections = self.loggedInThenLost(3)
        # The first of three drops is done; two are to come.
        self.assertEqual(len(self.remote._spread), 2)
        self.assertEqual(sum(c.connected for c in connections), 2)
        self.remote.stopService()
        self.assertEqual(self.remote._spread, [])
        self.reactor.advance(60)
        self.flush(*connections)
        self.assertEqual(sum(c.connected for c in connections), 2)

    def test_noSpread(self) -> None:
        """
        With C{dropSpread=0}, the clients are dropped at once, as the
        bouncer's answer arrives.
        """
        self.remote.dropSpread = 0.0
        connections = self.loggedInThenLost(3)
        self.assertFalse(any(c.connected for c in connections))

    def test_badSpread(self) -> None:
        """
        A negative or NaN C{dropSpread} is refused.
        """
        for bad in (-1.0, float("nan")):
            with self.assertRaises(ValueError):
                RemoteBouncer(
                    TCP4ClientEndpoint(self.reactor, "127.0.0.1", PORT),
                    [],
                    clock=self.reactor,
                    dropSpread=bad,
                )

    def test_revokedWhileBouncerDown(self) -> None:
        """
        A keycard revoked in the store while the bouncer service was down
        (C{keycard revoke}) is not adopted by the restarted bouncer; the
        requester drops its client.
        """
        connection = self.client()
        keycardId = self.login(connection)
        other = self.client()
        otherId = self.login(other)
        self.dropRequester()
        self.stopBouncer()
        revoker = Revoker(self.store, self.reactor, 60.0)
        self.successResultOf(revoker.revokeKeycardIds([keycardId]))
        self.startBouncer()
        self.reactor.advance(1.0)
        self.completeConnection()
        self.flush(connection, other)
        self.assertFalse(connection.connected)
        self.assertNotIn(keycardId, self.bouncer.held)
        self.assertTrue(other.connected)
        self.assertIn(otherId, self.bouncer.held)

    def test_avatarRevokedWhileBouncerDown(self) -> None:
        """
        An avatar revoked while the bouncer service was down: none of its
        keycards is adopted, and a login after the restart works.
        """
        connection = self.client()
        self.login(connection)
        self.dropRequester()
        self.stopBouncer()
        self.reactor.advance(1.0)
        revoker = Revoker(self.store, self.reactor, 60.0)
        self.successResultOf(revoker.revokeAvatar("alice"))
        self.startBouncer()
        self.completeConnection()
        self.flush(connection)
        self.assertFalse(connection.connected)
        # Only the requester's own keycard is held.
        self.assertEqual([r.avatarId for r in self.bouncer.held.values()], ["req1"])
        again = self.client()
        self.login(again)

    def test_leftWhileAway(self) -> None:
        """
        A client that leaves while the bouncer is unreachable has its
        keycard removed once the requester is back, not at its expiry.
        """
        connection = self.client()
        keycardId = self.login(connection)
        self.dropRequester()
        connection.disconnect()
        self.assertIn(keycardId, self.bouncer.held)
        self.reactor.advance(1.0)
        self.completeConnection()
        self.assertNotIn(keycardId, self.bouncer.held)
        self.assertIsNone(self.successResultOf(self.store.get(keycardId)))

    def secondRequester(self) -> tuple[RemoteBouncer, KeycardRoot]:
        """
        Another requester process logging in under the same name.
        """
        remote = RemoteBouncer(
            TCP4ClientEndpoint(self.reactor, "127.0.0.1", PORT),
            [PassphraseAnswerer("req1", SECRETS["req1"])],
            clock=self.reactor,
            retryPolicy=lambda attempt: 1.0,
        )
        root = KeycardRoot(remote, Portal(AvatarRealm()), "req1")
        remote.startService()
        self.addCleanup(remote.stopService)
        return remote, root

    def test_secondConnectionRefused(self) -> None:
        """
        A second connection under a connected requester's name is refused,
        and the first stays registered; once the first closes, the second
        gets in on its next try, and expiries reach its clients.
        """
        events: list[LogEvent] = []
        globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, events.append)  # type: ignore[arg-type]
        remote, root = self.secondRequester()
        self.completeConnection()
        self.assertIn(
            "could not log in to the bouncer: this requester is already connected",
            [formatEvent(e) for e in events],
        )
        self.assertIsNone(remote._perspective)
        connection = self.client()
        keycardId = self.login(connection)
        d = self.bouncer.expireKeycardIds([keycardId])
        self.flush(connection)
        self.assertEqual(self.successResultOf(d), 1)
        self.assertFalse(connection.connected)

        self.remote.stopService()
        self.flush()
        self.advance(1)
        self.completeConnection()
        self.assertIsNotNone(remote._perspective)
        connection = connectToRoot(root, self.reactor)
        self.flush(connection)
        keycardId = self.login(connection)
        self.advance(40, connection)
        d = self.bouncer.expireKeycardIds([keycardId])
        self.flush(connection)
        self.assertEqual(self.successResultOf(d), 1)
        self.assertFalse(connection.connected)

    def test_deadConnectionDropped(self) -> None:
        """
        When a second connection claims a requester's name, the first is
        asked to answer; one that does not within C{pingTimeout} is dropped,
        and the second gets in on its next try.
        """
        stale = self.pumps.pop()  # what the first requester's link carries is lost
        remote, root = self.secondRequester()
        self.completeConnection()
        self.assertIsNone(remote._perspective)
        self.reactor.advance(self.bouncerRealm.pingTimeout - 1)
        self.assertFalse(stale.serverIO.disconnecting)
        self.reactor.advance(1)
        self.assertTrue(stale.serverIO.disconnecting)
        stale.serverIO.stream.clear()
        while stale.pump():
            pass
        self.completeConnection()
        self.assertIsNotNone(remote._perspective)
        connection = connectToRoot(root, self.reactor)
        self.flush(connection)
        self.login(connection)

    def test_unreachable(self) -> None:
        for pump in self.pumps:
            pump.serverIO.loseConnection()
        self.flush()
        connection = self.client()
        d = connection.factory.login([PassphraseAnswerer("alice", "wonderland")])
        self.flush(connection)
        self.assertIn("unreachable", self.failureResultOf(d).getErrorMessage())

    def test_silentRequester(self) -> None:
        """
        A requester that stays away longer than the timeout loses its
        keycards.
        """
        connection = self.client()
        keycardId = self.login(connection)
        self.remote.stopService()
        self.flush(connection)
        self.reactor.advance(29)
        self.assertIn(keycardId, self.bouncer.held)
        self.reactor.advance(1)
        self.assertNotIn(keycardId, self.bouncer.held)
        self.assertIsNone(self.successResultOf(self.store.get(keycardId)))

    # Client connections, told to the bouncer by a token

    def firstMessages(
        self, connection: KeycardTestConnection, count: int
    ) -> list[Deferred[Any]]:
        root = connection.factory.getRootObject()
        self.flush(connection)
        login = self.successResultOf(root)
        calls = [
            sendFirst(login, PassphraseKeycard(username="alice")) for _ in range(count)
        ]
        self.flush(connection)
        return calls

    def test_boundPerClientConnection(self) -> None:
        """
        The bouncer bounds the exchanges of each client connection of the
        requester, not of the requester's own connection.
        """
        first = self.client()
        calls = self.firstMessages(first, 5)
        for d in calls[:4]:
            self.successResultOf(d)
        self.failureResultOf(calls[4], KeycardDenied)
        other = self.client()
        self.successResultOf(self.firstMessages(other, 1)[0])

    def test_clientGoneFreesPlaces(self) -> None:
        connection = self.client()
        for d in self.firstMessages(connection, 2):
            self.successResultOf(d)
        self.assertEqual(len(self.bouncer._authentication.pending), 2)
        connection.disconnect()
        self.flush(connection)
        self.assertEqual(len(self.bouncer._authentication.pending), 0)
        self.assertEqual(self.remote._connections, {})

    def test_badToken(self) -> None:
        """
        A connection token that is not a short string is refused.
        """
        perspective = BouncerPerspective(self.bouncer, "req1", True)
        keycard = PassphraseKeycard(username="alice", address="10.0.0.1")
        self.assertRaises(
            KeycardDenied, perspective.perspective_authenticate, keycard, "x" * 65
        )
        self.assertRaises(
            KeycardDenied, perspective.perspective_connectionLost, ["not", "text"]
        )
        d = perspective.perspective_authenticate(keycard, None)
        self.successResultOf(d)
