"""
Tests for the queue of a seat pool through a real client and requester, in
memory (L{twisted.test.iosim}, a L{Clock}): a login that asks to wait for a
seat and finds the pool full is queued, told its place as it moves, and
logs in once a seat frees for it, first come, first served; its signed
ticket keeps its place across a dropped connection within the grace; the
queue's bounds, the ticket's signature and the wait's end are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from twisted_keycard import Bouncer, KeycardDenied, KeycardRoot
from twisted_keycard.bouncer import Quota, SeatQueuePolicy, Upkeep
from twisted_keycard.error import QuotaExceeded, SeatQueued
from twisted_keycard.metrics import PrometheusMetrics
from twisted_keycard.pb import KeycardLogin
from twisted_keycard.store import SEAT, IssuedKeycard, IStoreChanges, MemoryStore
from twisted_keycard.testing import KeycardTestConnection, connectToRoot
from twisted_keycard.tokens import (
    Keyring,
    QueueTicket,
    signTicket,
    verifyTicket,
)

from ._passphrase import PassphraseAnswerer, PassphraseChecker
from ._realm import AvatarRealm

USERS = {"alice": "wonderland", "bob": "builder", "carol": "singer", "dave": "d"}
GRACE = 30.0


def answerer(name: str) -> PassphraseAnswerer:
    return PassphraseAnswerer(name, USERS[name])


@implementer(IStoreChanges)
class PushingStore(MemoryStore):
    """
    A store in memory that tells its subscribers of each seat freed, as
    Redis pushes it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.subscribers: list[Callable[[str], object]] = []

    def subscribe(self, callback: Callable[[str], object]) -> Callable[[], None]:
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)

    def remove(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        record = _resultOf(super().remove(keycardId))
        if record is not None and record.held and record.seatPool is not None:
            for callback in list(self.subscribers):
                callback(SEAT)
        return succeed(record)


def _resultOf(d: Deferred[Any]) -> Any:
    box: list[Any] = []
    d.addCallback(box.append)
    return box[0]


class SeatQueueTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore()
        self.realm = AvatarRealm()
        self.ports = iter(range(1000, 2000))

    def bouncer(self, size: int = 5, **policy: Any) -> Bouncer:
        policy.setdefault("grace", GRACE)
        return Bouncer(
            [PassphraseChecker(USERS)],
            self.store,
            clock=self.clock,
            duration=3600.0,
            quota=Quota(seatPool="p", seats=1),
            seatQueue=SeatQueuePolicy(size, **policy),
            upkeep=Upkeep(followInterval=1.0),
        )

    def root(
        self, bouncer: Bouncer | None = None, heartbeat: float | None = None
    ) -> KeycardRoot:
        return KeycardRoot(
            bouncer if bouncer is not None else self.bouncer(),
            Portal(self.realm),
            "face",
            clock=self.clock,
            heartbeat=heartbeat,
        )

    def connect(
        self, root: KeycardRoot, host: str = "192.0.2.1"
    ) -> KeycardTestConnection:
        return connectToRoot(root, self.clock, host, next(self.ports))

    def wait(
        self,
        connection: KeycardTestConnection,
        name: str,
        seconds: float = 600.0,
        **kw: Any,
    ) -> tuple[Deferred[KeycardLogin], list[tuple[int, int]]]:
        places: list[tuple[int, int]] = []
        d = connection.factory.loginWithKeycard(
            [answerer(name)],
            waitForSeat=seconds,
            onPlace=lambda place, waiting: places.append((place, waiting)),
            **kw,
        )
        connection.flush()
        return d, places

    def holder(self, root: KeycardRoot) -> KeycardTestConnection:
        """
        Alice's client, holding the pool's one seat.
        """
        alice = self.connect(root)
        self.successResultOf(alice.loginWithKeycard([answerer("alice")]))
        return alice

    def waiter(
        self, root: KeycardRoot, name: str, seconds: float = 600.0, **kw: Any
    ) -> tuple[KeycardTestConnection, Deferred[KeycardLogin], list[tuple[int, int]]]:
        """
        A new client of C{name}'s that waits for a seat.
        """
        connection = self.connect(root)
        return (connection, *self.wait(connection, name, seconds, **kw))

    def advance(self, seconds: float, *connections: KeycardTestConnection) -> None:
        for _ in range(int(seconds)):
            self.clock.advance(1.0)
            for connection in connections:
                connection.flush()

    def keyring(self) -> Keyring:
        keyring = self.successResultOf(self.store.loadKeyring())
        assert keyring is not None
        return keyring

    def queue(self) -> list[str]:
        waiters = self.successResultOf(self.store.waiters("p", self.clock.seconds()))
        return [w.avatarId for w in waiters]

    def test_waitInOrder(self) -> None:
        """
        With the pool full, the second and third logins that ask to wait
        are queued in order and told their places; when the holder leaves,
        the head logs in within the follow interval, and the next moves up.
        """
        root = self.root()
        alice = self.holder(root)
        bob, bobLogin, bobPlaces = self.waiter(root, "bob")
        carol, carolLogin, carolPlaces = self.waiter(root, "carol")
        self.assertNoResult(bobLogin)
        self.assertNoResult(carolLogin)
        self.assertEqual(bobPlaces, [(1, 1)])
        self.assertEqual(carolPlaces, [(2, 2)])
        self.assertEqual(self.queue(), ["bob", "carol"])
        self.advance(5, bob, carol)
        # Told once while the places stay; Bob learns the queue grew.
        self.assertEqual(bobPlaces, [(1, 1), (1, 2)])
        self.assertEqual(carolPlaces, [(2, 2)])
        self.assertNoResult(bobLogin)
        alice.disconnect()
        self.advance(1, bob, carol)
        login = self.successResultOf(bobLogin)
        self.assertEqual(login.keycard.avatarId, "bob")
        self.assertEqual(bob.factory.seatTicket, None)
        self.advance(1, bob, carol)
        self.assertEqual(carolPlaces, [(2, 2), (1, 1)])
        self.assertNoResult(carolLogin)
        self.assertEqual(self.queue(), ["carol"])
        bob.disconnect()
        self.advance(1, carol)
        self.assertEqual(self.successResultOf(carolLogin).keycard.avatarId, "carol")
        self.assertEqual(self.queue(), [])

    def test_pushedSeatWakesHead(self) -> None:
        """
        On a store that tells of seats freed (Redis's push), the head of
        the queue takes a freed seat at once, not at its next look a follow
        interval later; the one behind it learns it moved up at its next
        look (the head's grant frees no seat).
        """
        self.store = PushingStore()
        bouncer = Bouncer(
            [PassphraseChecker(USERS)],
            self.store,
            clock=self.clock,
            quota=Quota(seatPool="p", seats=1),
            seatQueue=SeatQueuePolicy(5, grace=GRACE),
            upkeep=Upkeep(followInterval=10.0, leaseTime=30.0),
        )
        root = self.root(bouncer)
        alice = self.holder(root)
        bob, bobLogin, _ = self.waiter(root, "bob")
        carol, _, carolPlaces = self.waiter(root, "carol")
        assert bouncer.seatQueue is not None
        self.assertEqual(len(self.store.subscribers), 1)
        alice.disconnect()
        bob.flush()
        self.assertEqual(self.successResultOf(bobLogin).keycard.avatarId, "bob")
        # Carol learns she moved up at her next look.
        self.assertEqual(carolPlaces, [(2, 2)])
        self.clock.advance(10.0)
        carol.flush()
        self.assertEqual(carolPlaces, [(2, 2), (1, 1)])
        bouncer.seatQueue.stop()
        self.assertEqual(self.store.subscribers, [])

    def test_gauges(self) -> None:
        """
        The metrics show the clients waiting through the bouncer, the
        queue's bound and the longest wait so far, from each ticket's first
        queuing.
        """
        registry = CollectorRegistry()
        metrics = PrometheusMetrics(registry, timer=self.clock.seconds)
        bouncer = Bouncer(
            [PassphraseChecker(USERS)],
            self.store,
            clock=self.clock,
            quota=Quota(seatPool="p", seats=1),
            seatQueue=SeatQueuePolicy(5, grace=GRACE),
            upkeep=Upkeep(followInterval=1.0),
            metrics=metrics,
        )

        def value(name: str) -> float | None:
            return registry.get_sample_value(name, {"pool": "p"})

        root = self.root(bouncer)
        self.assertEqual(value("keycard_seat_queue_waiting"), 0)
        self.assertEqual(value("keycard_seat_queue_size"), 5)
        self.assertEqual(value("keycard_seat_queue_longest_wait_seconds"), 0)
        alice = self.holder(root)
        bob, bobLogin, _ = self.waiter(root, "bob")
        self.advance(5, bob)
        carol, _, _ = self.waiter(root, "carol")
        self.advance(2, bob, carol)
        self.assertEqual(value("keycard_seat_queue_waiting"), 2)
        self.assertEqual(value("keycard_seat_queue_longest_wait_seconds"), 7)
        alice.disconnect()
        self.advance(1, bob, carol)
        self.successResultOf(bobLogin)
        self.assertEqual(value("keycard_seat_queue_waiting"), 1)
        self.assertEqual(value("keycard_seat_queue_longest_wait_seconds"), 3)

    def test_storeFailsWhileWaiting(self) -> None:
        """
        A store that fails while a client waits is logged; the client logs
        in again with its ticket and keeps its place.
        """
        failing: list[int] = []

        class FailingStore(MemoryStore):
            def renewPlace(
                self, pool: str, ticketId: str, lapses: float, when: float
            ) -> Deferred[tuple[int, int] | None]:
                if failing:
                    failing.pop()
                    return fail(RuntimeError("the store is down"))
                return super().renewPlace(pool, ticketId, lapses, when)

        self.store = FailingStore()
        root = self.root()
        alice = self.holder(root)
        bob, bobLogin, bobPlaces = self.waiter(root, "bob")
        carol, _, _ = self.waiter(root, "carol")
        ticket = bob.factory.seatTicket
        failing.append(1)
        self.advance(2, bob, carol)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(bob.factory.seatTicket, ticket)
        self.assertEqual(self.queue(), ["bob", "carol"])
        self.assertEqual(bobPlaces[-1][0], 1)
        alice.disconnect()
        self.advance(1, bob, carol)
        self.assertEqual(self.successResultOf(bobLogin).keycard.avatarId, "bob")

    def test_newcomerBehindQueue(self) -> None:
        """
        A seat freed while clients wait goes to the head of the queue: a
        login that does not wait is refused meanwhile, as for a full pool.
        """
        root = self.root()
        alice = self.holder(root)
        bob, bobLogin, _ = self.waiter(root, "bob")
        alice.disconnect()
        dave = self.connect(root)
        refused = self.failureResultOf(
            dave.loginWithKeycard([answerer("dave")]), KeycardDenied
        )
        self.assertEqual(refused.getErrorMessage(), "no seat left in pool 'p'")
        self.advance(1, bob)
        self.successResultOf(bobLogin)

    def test_noWaitRefused(self) -> None:
        """
        A login that does not ask to wait is refused at once by a full
        pool, queue or not, and is not queued.
        """
        root = self.root()
        self.holder(root)
        bob = self.connect(root)
        refused = self.failureResultOf(
            bob.loginWithKeycard([answerer("bob")]), KeycardDenied
        )
        self.assertEqual(refused.getErrorMessage(), "no seat left in pool 'p'")
        self.assertEqual(self.queue(), [])

    def test_timeout(self) -> None:
        """
        Past its C{waitForSeat}, a waiting login gives its place up and
        fails with one line naming its last place.
        """
        root = self.root()
        alice = self.holder(root)
        bob, bobLogin, _ = self.waiter(root, "bob", 5.0)
        self.advance(4, bob, alice)
        self.assertNoResult(bobLogin)
        self.advance(1, bob, alice)
        failure = self.failureResultOf(bobLogin, QuotaExceeded)
        self.assertEqual(failure.getErrorMessage(), "no seat within 5 s: place 1 of 1")
        self.assertEqual(self.queue(), [])
        self.assertIsNone(bob.factory.seatTicket)

    def test_reconnectKeepsPlace(self) -> None:
        """
        A client whose connection dropped while it waited takes its place
        back with its ticket on a new connection, within the grace, ahead
        of those queued after it.
        """
        root = self.root()
        alice = self.holder(root)
        bob, bobLogin, _ = self.waiter(root, "bob")
        carol, carolLogin, _ = self.waiter(root, "carol")
        ticket = bob.factory.seatTicket
        assert ticket is not None
        bob.disconnect()
        self.failureResultOf(bobLogin)
        self.advance(GRACE - 5, carol, alice)
        self.assertEqual(self.queue(), ["bob", "carol"])
        again, againLogin, places = self.waiter(root, "bob", seatTicket=ticket)
        self.assertEqual(places, [(1, 2)])
        alice.disconnect()
        self.advance(1, again, carol)
        self.assertEqual(self.successResultOf(againLogin).keycard.avatarId, "bob")
        self.assertNoResult(carolLogin)

    def test_frozenWaiterDropped(self) -> None:
        """
        With heartbeats, a waiting client is pinged as a holder is: one
        that answers stays queued however long; a frozen one (nothing
        pumped) is dropped after 3 heartbeats, and its place lapses after
        the grace.
        """
        root = self.root(heartbeat=10.0)
        alice = self.holder(root)
        bob, bobLogin, _ = self.waiter(root, "bob")
        carol, _, carolPlaces = self.waiter(root, "carol")
        self.advance(100, alice, bob, carol)
        self.assertTrue(bob.connected)
        self.assertEqual(self.queue(), ["bob", "carol"])
        # Bob's host freezes: nothing of his is pumped from now on.
        self.advance(29, alice, carol)
        self.assertTrue(bob.connected)
        events: list[LogEvent] = []
        globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, events.append)  # type: ignore[arg-type]
        self.advance(1, alice, carol)
        bob.flush()
        self.assertFalse(bob.connected)
        [line] = [e["line"] for e in events if e.get("event") == "keycard.dropped"]
        self.assertEqual(
            line,
            "dropped the client from 192.0.2.1 via face holding no keycard:"
            " no answer to 3 heartbeats in 30 s",
        )
        self.failureResultOf(bobLogin)
        self.assertEqual(self.queue(), ["bob", "carol"])
        self.advance(GRACE, alice, carol)
        self.assertEqual(self.queue(), ["carol"])
        self.assertEqual(carolPlaces[-1], (1, 1))

    def test_placeLapses(self) -> None:
        """
        A client gone longer than the grace loses its place: those behind
        move up, and its ticket queues it again at the tail.
        """
        root = self.root()
        alice = self.holder(root)
        bob, bobLogin, _ = self.waiter(root, "bob")
        ticket = bob.factory.seatTicket
        carol, _, carolPlaces = self.waiter(root, "carol")
        bob.disconnect()
        self.failureResultOf(bobLogin)
        self.advance(GRACE + 1, carol, alice)
        self.assertEqual(self.queue(), ["carol"])
        self.assertEqual(carolPlaces[-1], (1, 1))
        _again, _, places = self.waiter(root, "bob", seatTicket=ticket)
        self.assertEqual(places, [(2, 2)])
        self.assertEqual(self.queue(), ["carol", "bob"])

    def test_restartKeepsPlace(self) -> None:
        """
        The queue is the store's: a new bouncer and requester on the same
        store (a restart) take the ticket back and keep the order.
        """
        root = self.root()
        alice = self.holder(root)
        bob, bobLogin, _ = self.waiter(root, "bob")
        carol, carolLogin, _ = self.waiter(root, "carol")
        tickets = [bob.factory.seatTicket, carol.factory.seatTicket]
        # The clients lose their connections; Alice's seat stays taken (its
        # keycard is the store's, as after a bouncer killed).
        for connection in (bob, carol):
            connection.disconnect()
        self.failureResultOf(bobLogin)
        self.failureResultOf(carolLogin)
        self.assertEqual(self.queue(), ["bob", "carol"])
        restarted = self.root()
        carol2, carolLogin2, carolPlaces = self.waiter(
            restarted, "carol", seatTicket=tickets[1]
        )
        bob2, bobLogin2, bobPlaces = self.waiter(
            restarted, "bob", seatTicket=tickets[0]
        )
        self.assertEqual(carolPlaces, [(2, 2)])
        self.assertEqual(bobPlaces, [(1, 2)])
        alice.disconnect()
        self.advance(1, bob2, carol2)
        self.assertEqual(self.successResultOf(bobLogin2).keycard.avatarId, "bob")
        self.assertNoResult(carolLogin2)

    def test_bounds(self) -> None:
        """
        A full queue refuses a login that asks to wait, naming the limit;
        so does an avatar's share.
        """
        root = self.root(self.bouncer(2, perAvatar=1))
        self.holder(root)
        bob = self.connect(root)
        self.wait(bob, "bob")
        _bob2, d, _ = self.waiter(root, "bob")
        self.assertEqual(
            self.failureResultOf(d, KeycardDenied).getErrorMessage(),
            "too many places in the queue of pool 'p' for this avatar",
        )
        carol = self.connect(root)
        self.wait(carol, "carol")
        _dave, d, _ = self.waiter(root, "dave")
        self.assertEqual(
            self.failureResultOf(d, KeycardDenied).getErrorMessage(),
            "the queue of pool 'p' is full",
        )
        self.assertEqual(self.queue(), ["bob", "carol"])

    def test_ticketOfAnotherAvatar(self) -> None:
        """
        A ticket takes its place back only for its own avatar: another
        avatar that presents it logs in as a newcomer, queued at the tail.
        """
        root = self.root()
        alice = self.holder(root)
        bob = self.connect(root)
        self.wait(bob, "bob")
        ticket = bob.factory.seatTicket
        alice.disconnect()
        # Bob's ticket, Dave's password: Dave waits behind Bob.
        dave, daveLogin, places = self.waiter(root, "dave", seatTicket=ticket)
        self.advance(1, dave)
        self.assertNoResult(daveLogin)
        self.assertEqual(places, [(2, 2)])
        self.assertEqual(self.queue(), ["bob", "dave"])

    def ticketLogin(self, connection: KeycardTestConnection, ticket: str) -> Any:
        """
        A login that waits, with C{ticket}, once only.
        """
        d = connection.factory.loginWithKeycard(
            [answerer("bob")], waitForSeat=60.0, seatTicket=ticket
        )
        connection.flush()
        return d

    def test_tamperedTicket(self) -> None:
        """
        A ticket tampered with, signed by another keyring, or for another
        pool is refused, and the login queued afresh at the tail.
        """
        root = self.root(self.bouncer(10))
        self.holder(root)
        bob = self.connect(root)
        self.wait(bob, "bob")
        ticket = bob.factory.seatTicket
        assert ticket is not None
        head, body, mac = ticket.rsplit(".", 2)
        keyring = self.keyring()
        claims = verifyTicket(ticket, keyring, self.clock.seconds())
        forged = QueueTicket("p", claims.ticketId, "mallory", claims.expires)
        foreign = Keyring.generate(0.0).signing
        bad = [
            f"{head}.{body}x.{mac}",
            f"{head}.{signTicket(forged, foreign).split('.')[2]}.{mac}",
            signTicket(claims, foreign),
            signTicket(QueueTicket("q", "t1", "bob", 1e10), keyring.signing),
            "not a ticket",
        ]
        refused: list[str] = []
        for text in bad:
            other = self.connect(root)
            self.assertNoResult(self.ticketLogin(other, text))
            refused.append(other.factory.seatTicket or "")
        # Each one was refused, then queued afresh (a ticket of its own).
        self.assertEqual(len(set(refused)), len(bad))
        self.assertNotIn(ticket, refused)
        self.assertEqual(self.queue(), ["bob"] * (len(bad) + 1))

    def test_seatNotQueued(self) -> None:
        """
        C{seat} on a connection where no login was queued is denied.
        """
        root = self.root()
        bob = self.connect(root)
        rootObject = self.successResultOf(bob.factory.getRootObject())
        d = rootObject.callRemote("seat", None)
        bob.flush()
        failure = self.failureResultOf(d, KeycardDenied)
        self.assertEqual(
            failure.getErrorMessage(), "no login of this connection waits for a seat"
        )

    def test_seatWithoutQueue(self) -> None:
        """
        A requester whose bouncer keeps no queue refuses C{seat}, and a
        login that asks to wait is refused as it would be without asking.
        """
        bouncer = Bouncer(
            [PassphraseChecker(USERS)],
            self.store,
            clock=self.clock,
            quota=Quota(seatPool="p", seats=1),
        )
        root = self.root(bouncer)
        self.holder(root)
        bob, d, places = self.waiter(root, "bob")
        self.assertEqual(
            self.failureResultOf(d, KeycardDenied).getErrorMessage(),
            "no seat left in pool 'p'",
        )
        self.assertEqual(places, [])
        rootObject = self.successResultOf(bob.factory.getRootObject())
        call = rootObject.callRemote("seat", None)
        bob.flush()
        failure = self.failureResultOf(call, KeycardDenied)
        self.assertEqual(failure.getErrorMessage(), "this bouncer keeps no seat queue")

    def test_deniedInBouncer(self) -> None:
        """
        The bouncer itself raises L{SeatQueued}, with the signed ticket
        and the place, for a keycard marked to wait.
        """
        root = self.root()
        self.holder(root)
        bob = self.connect(root)
        self.wait(bob, "bob")
        ticket = bob.factory.seatTicket
        keyring = self.keyring()
        claims = verifyTicket(ticket, keyring, self.clock.seconds())
        self.assertEqual((claims.pool, claims.avatarId), ("p", "bob"))
        self.assertEqual(claims.expires, self.clock.seconds() + 86400.0)
        self.assertTrue(issubclass(SeatQueued, QuotaExceeded))

    def test_badWait(self) -> None:
        """
        A C{waitForSeat} that is not a positive number is refused.
        """
        root = self.root()
        alice = self.connect(root)
        with self.assertRaises(ValueError):
            alice.factory.login([answerer("alice")], waitForSeat=0)

    def test_queueNeedsPoolAndStore(self) -> None:
        """
        A seat queue needs a seat pool, and a store that keeps queues.
        """
        with self.assertRaises(ValueError):
            Bouncer(
                [PassphraseChecker(USERS)],
                self.store,
                clock=self.clock,
                seatQueue=SeatQueuePolicy(3),
            )
