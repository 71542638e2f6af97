"""
Tests for the renewal of held keycards by L{KeycardRoot} (L{Renewal}): a
client that stays connected keeps its keycard past its duration, within the
bouncer's C{maxLifetime}; revocation still drops it at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import Bouncer, KeycardDenied, KeycardRoot, MemoryStore
from twisted_keycard.pb._root import Renewal
from twisted_keycard.testing import (
    KeycardTestConnection,
    KeycardTestServer,
    connectToRoot,
)

from ._passphrase import PassphraseAnswerer, PassphraseChecker
from ._realm import AvatarRealm

ALICE = PassphraseAnswerer("alice", "wonderland")


class RootRenewalTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.realm = AvatarRealm()

    def server(self, maxLifetime: float | None = None) -> KeycardTestServer:
        return KeycardTestServer.build(
            [PassphraseChecker({"alice": "wonderland"})],
            self.realm,
            duration=60.0,
            maxLifetime=maxLifetime,
        )

    def login(self, connection: KeycardTestConnection) -> str:
        keycardId = self.successResultOf(
            connection.loginWithKeycard([ALICE])
        ).keycard.id
        assert keycardId is not None
        return keycardId

    def advance(
        self, clock: Clock, seconds: int, connection: KeycardTestConnection
    ) -> None:
        for _ in range(seconds):
            clock.advance(1)
            connection.flush()

    def test_renewedWhileConnected(self) -> None:
        """
        By default a client that stays connected keeps its keycard long past
        its duration: the root renews it a third of the way through.
        """
        server = self.server()
        connection = server.connect()
        keycardId = self.login(connection)
        self.advance(server.clock, 600, connection)
        self.assertTrue(connection.connected)
        self.assertEqual(self.realm.loggedOut, [])
        record = self.successResultOf(server.bouncer.store.get(keycardId))
        assert record is not None
        self.assertEqual(record.expires, 600 + 60.0)

    def test_maxLifetime(self) -> None:
        """
        Renewal stops at the bouncer's C{maxLifetime}: the client is dropped
        then.
        """
        server = self.server(maxLifetime=150.0)
        connection = server.connect()
        self.login(connection)
        self.advance(server.clock, 149, connection)
        self.assertTrue(connection.connected)
        self.advance(server.clock, 1, connection)
        self.assertFalse(connection.connected)
        self.assertEqual(self.realm.loggedOut, ["alice"])
        self.assertEqual(server.clock.getDelayedCalls(), [])

    def test_revocationDropsAtOnce(self) -> None:
        """
        A renewed keycard that the bouncer expires drops its client at once,
        and its renewal stops.
        """
        server = self.server()
        connection = server.connect()
        keycardId = self.login(connection)
        self.advance(server.clock, 100, connection)
        self.successResultOf(server.bouncer.expireKeycardIds([keycardId]))
        connection.flush()
        self.assertFalse(connection.connected)
        self.assertEqual(server.root.keycardIds(), [])
        self.assertEqual(server.clock.getDelayedCalls(), [])

    def test_renewEvery(self) -> None:
        """
        C{renewEvery} sets the seconds between renewals.
        """
        clock = Clock()
        bouncer = Bouncer(
            [PassphraseChecker({"alice": "wonderland"})],
            MemoryStore(),
            clock=clock,
            duration=60.0,
        )
        root = KeycardRoot(bouncer, Portal(self.realm), "r", renewEvery=5.0)
        connection = connectToRoot(root, clock)
        keycardId = self.login(connection)
        self.advance(clock, 5, connection)
        self.assertEqual(bouncer.held[keycardId].expires, 65.0)
        self.advance(clock, 4, connection)
        self.assertEqual(bouncer.held[keycardId].expires, 65.0)
        self.advance(clock, 1, connection)
        self.assertEqual(bouncer.held[keycardId].expires, 70.0)

    def test_renewOff(self) -> None:
        """
        With C{renew=False}, a session ends when its keycard's duration does,
        and the root sets no timer.  The root takes the bouncer's clock when
        it is given none.
        """
        clock = Clock()
        bouncer = Bouncer(
            [PassphraseChecker({"alice": "wonderland"})],
            MemoryStore(),
            clock=clock,
            duration=60.0,
        )
        root = KeycardRoot(bouncer, Portal(self.realm), "r", renew=False)
        connection = connectToRoot(root, clock)
        keycardId = self.login(connection)
        self.assertEqual([c.getTime() for c in clock.getDelayedCalls()], [60.0])
        self.advance(clock, 59, connection)
        self.assertTrue(connection.connected)
        self.advance(clock, 1, connection)
        self.assertFalse(connection.connected)
        self.assertNotIn(keycardId, bouncer.held)

    def test_badRenewEvery(self) -> None:
        bouncer = Bouncer([], MemoryStore(), clock=Clock())
        for bad in (0.0, -1.0, float("inf"), float("nan")):
            self.assertRaises(
                ValueError,
                KeycardRoot,
                bouncer,
                Portal(self.realm),
                renewEvery=bad,
            )

    def test_renewalFailure(self) -> None:
        """
        A renewal the bouncer fails is logged; the next one is tried on
        time.
        """
        server = self.server()
        connection = server.connect()
        keycardId = self.login(connection)
        events: list[LogEvent] = []
        globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, events.append)  # type: ignore[arg-type]
        keepAlive = server.bouncer.keepAlive
        server.bouncer.keepAlive = lambda name, ids: fail(  # type: ignore[method-assign,assignment]
            KeycardDenied("the bouncer is unreachable")
        )
        self.advance(server.clock, 20, connection)
        self.assertIn(
            "could not renew 1 keycard(s): the bouncer is unreachable",
            [e.get("log_format", "").format(**e) for e in events],
        )
        server.bouncer.keepAlive = keepAlive  # type: ignore[method-assign]
        self.advance(server.clock, 20, connection)
        self.assertEqual(server.bouncer.held[keycardId].expires, 100.0)
        self.assertTrue(connection.connected)


class _Bouncer:
    """
    Records the keepAlive calls it gets, and answers them when told.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.answers: list[Deferred[int]] = []

    def keepAlive(self, requesterName: str, keycardIds: Sequence[str]) -> Deferred[int]:
        self.calls.append((requesterName, list(keycardIds)))
        d: Deferred[int] = Deferred()
        self.answers.append(d)
        return d


class RenewalTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.bouncer = _Bouncer()
        self.held: dict[str, object] = {}
        self.renewal = Renewal(
            self.bouncer,  # type: ignore[arg-type]
            "req",
            lambda: self.clock,
            self.held,
        )

    def test_shorterDurationComesFirst(self) -> None:
        """
        A keycard with a shorter duration brings the next renewal forward.
        """
        self.held["a"] = None
        self.renewal.issued("a", 60.0)
        self.assertEqual([c.getTime() for c in self.clock.getDelayedCalls()], [20.0])
        self.held["b"] = None
        self.renewal.issued("b", 15.0)
        self.assertEqual([c.getTime() for c in self.clock.getDelayedCalls()], [5.0])
        self.clock.advance(5)
        self.assertEqual(self.bouncer.calls, [("req", ["a", "b"])])

    def test_oneRenewalAtATime(self) -> None:
        """
        The next renewal is set when the bouncer answered, not before.
        """
        self.held["a"] = None
        self.renewal.issued("a", 30.0)
        self.clock.advance(10)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.held["b"] = None
        self.renewal.issued("b", 30.0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.bouncer.answers[0].callback(1)
        self.assertEqual([c.getTime() for c in self.clock.getDelayedCalls()], [20.0])

    def test_stopsWhenNothingHeld(self) -> None:
        """
        Once no keycard is held the timer is cancelled, and a released
        keycard's duration no longer counts.
        """
        self.held["a"] = None
        self.renewal.issued("a", 3.0)
        del self.held["a"]
        self.renewal.released()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.held["b"] = None
        self.renewal.issued("b", 60.0)
        self.assertEqual([c.getTime() for c in self.clock.getDelayedCalls()], [20.0])

    def test_unknownDuration(self) -> None:
        """
        A keycard without a duration is renewed with the others, but sets
        no timer of its own.
        """
        self.held["a"] = None
        self.renewal.issued("a", None)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.held["b"] = None
        self.renewal.issued("b", 9.0)
        self.clock.advance(3)
        self.assertEqual(self.bouncer.calls, [("req", ["a", "b"])])
