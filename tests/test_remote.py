"""
Tests for L{twisted_keycard.remote}: a requester using a bouncer in another
"process", all in memory on a L{MemoryReactorClock}.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.test.iosim import ConnectionCompleter, IOPump
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import (
    Bouncer,
    KeycardDenied,
    KeycardRoot,
    KeycardServerFactory,
    MemoryStore,
)
from twisted_keycard.remote import BouncerRealm, RemoteBouncer
from twisted_keycard.remote._bouncerside import BouncerPerspective
from twisted_keycard.testing import KeycardTestConnection, connectToRoot

from ._passphrase import PassphraseAnswerer, PassphraseChecker, PassphraseKeycard
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
        self.reactor.listenTCP(PORT, KeycardServerFactory(serviceRoot))

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

    def test_bouncerRestart(self) -> None:
        """
        The bouncer service restarts; the requester reconnects after its
        backoff, resends the ids its clients hold, and the new bouncer
        expires them when their time comes, dropping the client.
        """
        connection = self.client()
        keycardId = self.login(connection)
        for pump in self.pumps:
            pump.serverIO.loseConnection()
        self.flush(connection)
        self.bouncer.stopService()
        self.pumps.clear()
        self.startBouncer()
        self.assertTrue(connection.connected)
        self.reactor.advance(1.0)
        self.completeConnection()
        self.assertIn(keycardId, self.bouncer.held)
        self.reactor.advance(58.5)
        self.flush(connection)
        self.assertTrue(connection.connected)
        self.reactor.advance(0.5)
        self.flush(connection)
        self.assertFalse(connection.connected)

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
            login.callRemote("login", PassphraseKeycard(username="alice"), None)
            for _ in range(count)
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
        self.assertEqual(len(self.bouncer._pending), 2)
        connection.disconnect()
        self.flush(connection)
        self.assertEqual(len(self.bouncer._pending), 0)
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
