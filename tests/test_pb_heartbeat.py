"""
Tests for the heartbeats of L{KeycardRoot} (L{Heartbeat}): a client that
holds a keycard and answers keeps it and its seat; one that stops answering
(a frozen host) is dropped after L{HEARTBEAT_MISSES} heartbeats, with one
audit line, and its seat goes to the next client.
"""

from __future__ import annotations

from twisted.cred.portal import Portal
from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import Bouncer, KeycardDenied, KeycardRoot, MemoryStore
from twisted_keycard.bouncer import Quota
from twisted_keycard.pb._root import HEARTBEAT_NAME, Heartbeat
from twisted_keycard.testing import KeycardTestConnection, connectToRoot

from ._passphrase import PassphraseAnswerer, PassphraseChecker
from ._realm import AvatarRealm

ALICE = PassphraseAnswerer("alice", "wonderland")
BOB = PassphraseAnswerer("bob", "builder")
EVERY = 10.0


class HeartbeatTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.realm = AvatarRealm()
        self.clock = Clock()
        self.store = MemoryStore()
        self.bouncer = Bouncer(
            [PassphraseChecker({"alice": "wonderland", "bob": "builder"})],
            self.store,
            clock=self.clock,
            duration=3600.0,
            quota=Quota(seatPool="p", seats=1),
        )
        self.events: list[LogEvent] = []
        observe = self.events.append
        globalLogPublisher.addObserver(observe)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, observe)  # type: ignore[arg-type]

    def root(self, heartbeat: float | None = EVERY) -> KeycardRoot:
        return KeycardRoot(
            self.bouncer, Portal(self.realm), "face", heartbeat=heartbeat
        )

    def login(
        self, root: KeycardRoot, answerer: PassphraseAnswerer = ALICE, port: int = 1
    ) -> KeycardTestConnection:
        connection = connectToRoot(root, self.clock, "192.0.2.7", port)
        self.successResultOf(connection.loginWithKeycard([answerer]))
        return connection

    def advance(
        self, seconds: float, *connections: KeycardTestConnection, step: float = 1.0
    ) -> None:
        """
        Advance the clock by C{seconds}, a C{step} at a time, pumping the
        C{connections} (the clients that answer) after each step.
        """
        done = 0.0
        while done < seconds:
            self.clock.advance(step)
            done += step
            for connection in connections:
                connection.flush()

    def dropped(self) -> list[LogEvent]:
        return [e for e in self.events if e.get("event") == "keycard.dropped"]

    def seatsTaken(self) -> int:
        taken = 0
        for avatar in ("alice", "bob"):
            records = self.successResultOf(self.store.byAvatar(avatar))
            taken += sum(1 for r in records if r.held and r.seatPool == "p")
        return taken

    def test_answeredKeepsSeat(self) -> None:
        """
        A client whose broker answers every heartbeat keeps its connection
        and its seat, however long; another client finds no seat.
        """
        root = self.root()
        alice = self.login(root)
        self.advance(20 * EVERY, alice)
        self.assertTrue(alice.connected)
        self.assertEqual(self.dropped(), [])
        self.assertEqual(self.seatsTaken(), 1)
        bob = connectToRoot(root, self.clock, "192.0.2.8", 2)
        failure = self.failureResultOf(bob.loginWithKeycard([BOB]), KeycardDenied)
        self.assertEqual(failure.getErrorMessage(), "no seat left in pool 'p'")

    def test_silentDropped(self) -> None:
        """
        A client that answers nothing (its host frozen: nothing is pumped)
        is dropped once 3 heartbeats went unanswered, not before, with one
        C{keycard.dropped} line; its seat is freed and another client
        gets it.
        """
        root = self.root()
        alice = self.login(root)
        [keycardId] = root.keycardIds()
        self.advance(2 * EVERY, alice)
        # Frozen from now on: the heartbeats pile up unanswered.
        self.advance(3 * EVERY - 1)
        self.assertEqual(self.dropped(), [])
        self.assertTrue(alice.connected)
        self.advance(1)
        [event] = self.dropped()
        self.assertEqual(event["keycardIds"], [keycardId])
        self.assertEqual(event["address"], "192.0.2.7")
        self.assertEqual(event["requesterName"], "face")
        self.assertEqual(
            event["line"],
            f"dropped the client from 192.0.2.7 via face holding {keycardId}:"
            " no answer to 3 heartbeats in 30 s",
        )
        alice.flush()
        self.assertFalse(alice.connected)
        self.assertEqual(self.realm.loggedOut, ["alice"])
        self.assertEqual(root.keycardIds(), [])
        self.assertEqual(self.seatsTaken(), 0)
        bob = self.login(root, BOB, 2)
        self.assertTrue(bob.connected)
        self.assertEqual(self.seatsTaken(), 1)
        assert root.heartbeat is not None
        self.assertEqual(root.heartbeat.watching(), 1)

    def test_lateAnswerInTime(self) -> None:
        """
        A client that answers late, but before 3 heartbeats went by with no
        answer, stays.
        """
        root = self.root()
        alice = self.login(root)
        for _ in range(5):
            self.advance(3 * EVERY - 1)
            alice.flush()
        self.assertTrue(alice.connected)
        self.assertEqual(self.dropped(), [])

    def test_stockBrokerAnswers(self) -> None:
        """
        A client whose broker does not know the heartbeat's name answers it
        with an error: alive all the same, it is not dropped.
        """
        root = self.root()
        alice = self.login(root)
        del alice.clientBroker.localObjects[HEARTBEAT_NAME.encode("utf-8")]
        self.advance(10 * EVERY, alice)
        self.assertTrue(alice.connected)
        self.assertEqual(self.dropped(), [])

    def test_noTimerWithoutHolders(self) -> None:
        """
        The heartbeat's timer runs only while a client holds a keycard; a
        client that leaves is no longer pinged.
        """
        root = self.root()
        assert root.heartbeat is not None
        connection = connectToRoot(root, self.clock, "192.0.2.7", 1)
        self.assertEqual(root.heartbeat.watching(), 0)
        self.successResultOf(connection.loginWithKeycard([ALICE]))
        self.assertEqual(root.heartbeat.watching(), 1)
        connection.factory.disconnect()
        connection.flush()
        self.assertEqual(root.heartbeat.watching(), 0)
        self.assertEqual(root.heartbeat._call, None)

    def test_offByDefault(self) -> None:
        """
        Without C{heartbeat}, a silent client keeps its seat until its
        keycard expires, as before.
        """
        root = self.root(None)
        self.assertIsNone(root.heartbeat)
        alice = self.login(root)
        self.advance(100 * EVERY, step=EVERY)
        self.assertEqual(self.dropped(), [])
        self.assertEqual(self.seatsTaken(), 1)
        self.assertTrue(alice.connected)

    def test_badHeartbeat(self) -> None:
        for bad in (0.0, -1.0, float("nan"), float("inf")):
            with self.assertRaises(ValueError):
                self.root(bad)
            with self.assertRaises(ValueError):
                Heartbeat(bad, lambda: self.clock, "r", lambda b: ())
