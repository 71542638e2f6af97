"""
The contract every L{IKeycardStore} backend passes: mix
L{KeycardStoreContract} into a trial test case that defines L{makeStore}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from zope.interface.verify import verifyObject

from twisted_keycard import IKeycardStore, IssuedKeycard
from twisted_keycard.error import QuotaExceeded
from twisted_keycard.store import (
    FAILED,
    STARTED,
    SUCCEEDED,
    IKeyringStore,
    ILeaseStore,
    IRevocationStore,
    ISeatQueue,
    IStoreHealth,
    IThrottleStore,
    QueueLimits,
    Revocation,
    SeatWaiter,
    ThrottleEvent,
    ThrottleShare,
)
from twisted_keycard.tokens._tokens import Keyring

if TYPE_CHECKING:
    from twisted.trial.unittest import SynchronousTestCase

    _Base = SynchronousTestCase
else:
    _Base = object


def record(keycardId: str, **changes: Any) -> IssuedKeycard:
    fields: dict[str, Any] = {
        "keycardId": keycardId,
        "avatarId": "alice",
        "requesterName": "r1",
        "bouncerName": "b1",
        "keycardType": "twisted_keycard.scram-sha-256",
        "address": "192.0.2.1",
        "issued": 100.0,
        "duration": 60.0,
        "expires": 160.0,
    }
    fields.update(changes)
    return IssuedKeycard(**fields)


class _StoreContract(_Base):
    """
    How the contracts wait for a store's results: backends whose methods
    fire later (a database) override L{resultOf} and L{failureOf}.
    """

    store: Any
    makeStore: Callable[[], Any]

    def setUp(self) -> None:
        self.store = self.makeStore()

    def resultOf(self, d: Deferred[Any]) -> Any:
        return self.successResultOf(d)

    def failureOf(self, d: Deferred[Any], *errors: type[BaseException]) -> Any:
        return self.failureResultOf(d, *errors)

    def outcomesOf(self, ds: list[Deferred[Any]]) -> list[Any]:
        """
        Wait for C{ds}, made together (none waited for before the others
        were made): each one's result, or its L{Failure}.
        """
        outcomes = []
        for d in ds:
            box: list[Any] = []
            d.addBoth(box.append)
            self.resultOf(d)
            outcomes.append(box[0])
        return outcomes


class KeycardStoreContract(_StoreContract):
    """
    Tests that every keycard store must pass.  Backends whose methods fire
    later (a database) override L{resultOf} and L{failureOf} to wait for
    them.  Mix in L{KeycardStoreLimitsContract}, L{RevocationStoreContract}
    and L{KeyringStoreContract} too for a backend that provides those parts.
    """

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IKeycardStore, self.store))

    def test_addGet(self) -> None:
        self.resultOf(self.store.add(record("k1")))
        self.assertEqual(self.resultOf(self.store.get("k1")), record("k1"))
        self.assertIsNone(self.resultOf(self.store.get("k2")))

    def test_addTwice(self) -> None:
        self.resultOf(self.store.add(record("k1")))
        self.failureOf(self.store.add(record("k1", avatarId="bob")), KeyError)
        self.assertEqual(self.resultOf(self.store.get("k1")), record("k1"))

    def test_remove(self) -> None:
        self.resultOf(self.store.add(record("k1")))
        self.assertEqual(self.resultOf(self.store.remove("k1")), record("k1"))
        self.assertIsNone(self.resultOf(self.store.remove("k1")))
        self.assertIsNone(self.resultOf(self.store.get("k1")))
        self.assertEqual(self.resultOf(self.store.byAvatar("alice")), [])

    def test_renew(self) -> None:
        self.resultOf(self.store.add(record("k1")))
        self.assertEqual(
            self.resultOf(self.store.renew("k1", 500.0)), record("k1", expires=500.0)
        )
        self.assertEqual(
            self.resultOf(self.store.get("k1")), record("k1", expires=500.0)
        )
        self.assertIsNone(self.resultOf(self.store.renew("k2", 500.0)))

    def test_byAvatar(self) -> None:
        self.resultOf(self.store.add(record("k2")))
        self.resultOf(self.store.add(record("k1")))
        self.resultOf(self.store.add(record("k3", avatarId="bob")))
        self.assertEqual(
            self.resultOf(self.store.byAvatar("alice")), [record("k1"), record("k2")]
        )
        self.assertEqual(self.resultOf(self.store.byAvatar("carol")), [])

    def test_byRequester(self) -> None:
        self.resultOf(self.store.add(record("k1")))
        self.resultOf(self.store.add(record("k2", requesterName="r2")))
        self.resultOf(self.store.add(record("k3", requesterName=None)))
        self.assertEqual(
            self.resultOf(self.store.byRequester("r2")),
            [record("k2", requesterName="r2")],
        )

    def test_expiredBefore(self) -> None:
        self.resultOf(self.store.add(record("k1", expires=150.0)))
        self.resultOf(self.store.add(record("k2", expires=160.0)))
        self.resultOf(self.store.add(record("k3", expires=170.0)))
        self.assertEqual(
            [r.keycardId for r in self.resultOf(self.store.expiredBefore(160.0))],
            ["k1", "k2"],
        )

    def test_count(self) -> None:
        self.assertEqual(self.resultOf(self.store.count()), 0)
        self.resultOf(self.store.add(record("k1")))
        self.resultOf(self.store.add(record("k2")))
        self.assertEqual(self.resultOf(self.store.count()), 2)


class KeycardStoreLimitsContract(_StoreContract):
    """
    Quotas, seat pools, parents and flushing: the part of the keycard store
    contract that bouncers with policies rely on.
    """

    def test_byParent(self) -> None:
        self.resultOf(self.store.add(record("p1")))
        self.resultOf(self.store.add(record("c1", parentId="p1")))
        self.resultOf(self.store.add(record("c2", parentId="p1")))
        self.resultOf(self.store.add(record("c3", parentId="c1")))
        self.assertEqual(
            [r.keycardId for r in self.resultOf(self.store.byParent("p1"))],
            ["c1", "c2"],
        )
        self.resultOf(self.store.remove("c1"))
        self.assertEqual(
            [r.keycardId for r in self.resultOf(self.store.byParent("p1"))], ["c2"]
        )

    def test_byFamily(self) -> None:
        """
        The records of a family, whatever their depth, in one look-up; the
        family id survives a release.
        """
        self.resultOf(self.store.add(record("p1", familyId="p1")))
        self.resultOf(self.store.add(record("c1", parentId="p1", familyId="p1")))
        self.resultOf(self.store.add(record("g1", parentId="c1", familyId="p1")))
        self.resultOf(self.store.add(record("p2", familyId="p2")))
        self.resultOf(self.store.add(record("old")))
        self.resultOf(self.store.release("g1"))
        self.assertEqual(
            self.resultOf(self.store.get("g1")),
            record("g1", parentId="c1", familyId="p1", held=False),
        )
        self.assertEqual(
            [r.keycardId for r in self.resultOf(self.store.byFamily("p1"))],
            ["c1", "g1", "p1"],
        )
        self.resultOf(self.store.remove("c1"))
        self.assertEqual(
            [r.keycardId for r in self.resultOf(self.store.byFamily("p1"))],
            ["g1", "p1"],
        )
        self.assertEqual(self.resultOf(self.store.byFamily("nobody")), [])

    def test_flushExpired(self) -> None:
        self.resultOf(self.store.add(record("k1", expires=150.0)))
        self.resultOf(self.store.add(record("k2", expires=160.0)))
        self.resultOf(self.store.add(record("k3", expires=170.0)))
        self.assertEqual(self.resultOf(self.store.flushExpired(160.0)), 2)
        self.assertEqual(self.resultOf(self.store.count()), 1)
        self.assertEqual(
            self.resultOf(self.store.byAvatar("alice")), [record("k3", expires=170.0)]
        )

    def test_avatarCap(self) -> None:
        for i in range(2):
            self.resultOf(self.store.addWithin(record(f"k{i}"), 2, None))
        failure = self.failureOf(
            self.store.addWithin(record("k9"), 2, None), QuotaExceeded
        )
        self.assertIn("avatar", failure.getErrorMessage())
        self.resultOf(self.store.addWithin(record("b1", avatarId="bob"), 2, None))
        self.resultOf(self.store.remove("k0"))
        self.resultOf(self.store.addWithin(record("k9"), 2, None))

    def test_release(self) -> None:
        """
        A released keycard stays, but takes no place in quotas or pools.
        """
        self.resultOf(self.store.addWithin(record("k1", seatPool="p"), 1, 1))
        released = self.resultOf(self.store.release("k1"))
        self.assertEqual(released, record("k1", held=False))
        self.assertEqual(self.resultOf(self.store.get("k1")), released)
        self.resultOf(self.store.addWithin(record("k2", seatPool="p"), 1, 1))
        self.assertIsNone(self.resultOf(self.store.release("nope")))
        self.assertEqual(
            [r.keycardId for r in self.resultOf(self.store.byAvatar("alice"))],
            ["k1", "k2"],
        )

    def test_expiredDoNotCount(self) -> None:
        """
        Keycards that have expired by the new one's issue time hold no
        place, even before they are flushed.
        """
        self.resultOf(self.store.addWithin(record("k0", expires=150.0), 1, None))
        self.resultOf(self.store.addWithin(record("k1", issued=150.0), 1, None))

    def test_seatPool(self) -> None:
        for i in range(3):
            self.resultOf(
                self.store.addWithin(
                    record(f"k{i}", avatarId=f"a{i}", seatPool="p"), None, 3
                )
            )
        failure = self.failureOf(
            self.store.addWithin(record("k9", avatarId="z", seatPool="p"), None, 3),
            QuotaExceeded,
        )
        self.assertIn("seat", failure.getErrorMessage())
        self.resultOf(self.store.addWithin(record("q1", seatPool="q"), None, 3))
        self.resultOf(self.store.remove("k1"))
        self.resultOf(self.store.addWithin(record("k9", seatPool="p"), None, 3))
        self.assertIsNone(self.resultOf(self.store.get("k1")))

    def test_seatsPerAvatar(self) -> None:
        """
        An avatar holds at most C{seatsPerAvatar} seats of one pool: the
        refusal names that limit; another avatar, another pool or a keycard
        with no seat is not held back; a released, removed or expired seat
        gives the place back.
        """

        def add(keycardId: str, **changes: Any) -> Any:
            changes.setdefault("seatPool", "p")
            return self.store.addWithin(record(keycardId, **changes), None, 5, 2)

        self.resultOf(add("k1"))
        self.resultOf(add("k2", expires=150.0))
        failure = self.failureOf(add("k3"), QuotaExceeded)
        self.assertEqual(
            failure.getErrorMessage(), "too many seats of pool 'p' for this avatar"
        )
        self.assertEqual(failure.value.limit, "seats-per-avatar")
        self.resultOf(add("b1", avatarId="bob"))
        self.resultOf(add("q1", seatPool="q"))
        self.resultOf(add("n1", seatPool=None))
        self.resultOf(add("k3", issued=150.0))
        self.failureOf(add("k4", issued=150.0), QuotaExceeded)
        self.resultOf(self.store.release("k1"))
        self.resultOf(add("k4", issued=150.0))
        self.resultOf(self.store.remove("k3"))
        self.resultOf(add("k5", issued=150.0))
        held = [r.keycardId for r in self.resultOf(self.store.byAvatar("alice"))]
        self.assertEqual(held, ["k1", "k2", "k4", "k5", "n1", "q1"])

    def test_seatLimitsInOrder(self) -> None:
        """
        A full pool is refused as C{pool} before an avatar's share is
        counted, and the cap per avatar as C{avatar} before both.
        """
        self.resultOf(self.store.addWithin(record("k1", seatPool="p"), 3, 1, 1))
        full = self.failureOf(
            self.store.addWithin(record("k2", seatPool="p"), 3, 1, 1), QuotaExceeded
        )
        self.assertEqual(full.value.limit, "pool")
        self.assertEqual(full.getErrorMessage(), "no seat left in pool 'p'")
        capped = self.failureOf(
            self.store.addWithin(record("k2", seatPool="p"), 1, 1, 1), QuotaExceeded
        )
        self.assertEqual(capped.value.limit, "avatar")


class RevocationStoreContract(_StoreContract):
    """
    Tests that every revocation store must pass.
    """

    def test_revocationInterface(self) -> None:
        self.assertTrue(verifyObject(IRevocationStore, self.store))

    def test_revoke(self) -> None:
        self.assertFalse(self.resultOf(self.store.isRevoked("k1")))
        added = self.resultOf(
            self.store.revoke(
                [Revocation("k1", 200.0, 100.0, "test"), Revocation("k2", 200.0, 100.0)]
            )
        )
        self.assertEqual(added, 2)
        self.assertTrue(self.resultOf(self.store.isRevoked("k1")))
        self.assertTrue(self.resultOf(self.store.isRevoked("k2")))
        self.assertFalse(self.resultOf(self.store.isRevoked("k3")))

    def test_revocationsOf(self) -> None:
        mark = Revocation("avatar:alice", 300.0, 100.0, "by avatar")
        self.resultOf(self.store.revoke([Revocation("k1", 200.0, 100.0), mark]))
        found = self.resultOf(self.store.revocationsOf(["k0", "k1", "avatar:alice"]))
        self.assertEqual(
            sorted(found, key=lambda r: r.keycardId),
            [mark, Revocation("k1", 200.0, 100.0)],
        )
        self.assertEqual(self.resultOf(self.store.revocationsOf([])), [])

    def test_revokeTwice(self) -> None:
        """
        Revoking again is not counted, and keeps the later expiry.
        """
        self.resultOf(self.store.revoke([Revocation("k1", 300.0, 100.0)]))
        self.assertEqual(
            self.resultOf(self.store.revoke([Revocation("k1", 200.0, 101.0)])), 0
        )
        self.assertEqual(self.resultOf(self.store.flushRevocations(250.0)), 0)
        self.assertTrue(self.resultOf(self.store.isRevoked("k1")))
        self.resultOf(self.store.revoke([Revocation("k1", 400.0, 102.0)]))
        self.assertEqual(self.resultOf(self.store.flushRevocations(350.0)), 0)
        self.assertTrue(self.resultOf(self.store.isRevoked("k1")))

    def test_flushRevocations(self) -> None:
        self.resultOf(
            self.store.revoke(
                [Revocation("k1", 150.0, 100.0), Revocation("k2", 250.0, 100.0)]
            )
        )
        self.assertEqual(self.resultOf(self.store.flushRevocations(150.0)), 1)
        self.assertFalse(self.resultOf(self.store.isRevoked("k1")))
        self.assertTrue(self.resultOf(self.store.isRevoked("k2")))

    def test_revokedSince(self) -> None:
        """
        A follower sees every revocation once, in order, in batches.
        """
        revocations, cursor = self.resultOf(self.store.revokedSince(0, 10))
        self.assertEqual(revocations, [])
        self.resultOf(
            self.store.revoke([Revocation(f"k{i}", 200.0, 100.0) for i in range(3)])
        )
        first, cursor = self.resultOf(self.store.revokedSince(cursor, 2))
        second, cursor = self.resultOf(self.store.revokedSince(cursor, 2))
        third, cursor = self.resultOf(self.store.revokedSince(cursor, 2))
        self.assertEqual([r.keycardId for r in first + second], ["k0", "k1", "k2"])
        self.assertEqual(third, [])
        self.resultOf(self.store.revoke([Revocation("k9", 200.0, 100.0, "later")]))
        fourth, _ = self.resultOf(self.store.revokedSince(cursor, 10))
        self.assertEqual(fourth, [Revocation("k9", 200.0, 100.0, "later")])


class KeyringStoreContract(_StoreContract):
    """
    Tests that every keyring store must pass.
    """

    def test_keyring(self) -> None:
        self.assertTrue(verifyObject(IKeyringStore, self.store))
        self.assertIsNone(self.resultOf(self.store.loadKeyring()))
        keyring = Keyring.generate(100.0)
        self.resultOf(self.store.saveKeyring(keyring))
        self.assertEqual(self.resultOf(self.store.loadKeyring()), keyring)
        rotated, _ = keyring.rotate(200.0, 50.0)
        self.resultOf(self.store.saveKeyring(rotated))
        self.assertEqual(self.resultOf(self.store.loadKeyring()), rotated)

    def test_keyringVersion(self) -> None:
        """
        The version changes at every save, even of the same keyring.
        """
        self.assertEqual(self.resultOf(self.store.keyringVersion()), 0)
        keyring = Keyring.generate(100.0)
        seen = set()
        for _ in range(3):
            self.resultOf(self.store.saveKeyring(keyring))
            seen.add(self.resultOf(self.store.keyringVersion()))
        self.assertEqual(len(seen), 3)
        self.assertNotIn(0, seen)

    def test_mockSecret(self) -> None:
        """
        The mock secret is made on first use and the same ever after, and
        keyring changes leave it alone.
        """
        secret = self.resultOf(self.store.mockSecret())
        self.assertIsInstance(secret, bytes)
        self.assertEqual(len(secret), 32)
        self.resultOf(self.store.saveKeyring(Keyring.generate(100.0)))
        self.assertEqual(self.resultOf(self.store.mockSecret()), secret)


class ThrottleStoreContract(_StoreContract):
    """
    Tests that every store of throttle events must pass.
    """

    def share(
        self,
        source: str,
        events: list[ThrottleEvent],
        cursor: int = 0,
        limit: int = 100,
    ) -> ThrottleShare:
        shared = self.resultOf(self.store.shareThrottle(source, events, cursor, limit))
        self.assertIsInstance(shared, ThrottleShare)
        return shared  # type: ignore[no-any-return]

    def test_throttleInterface(self) -> None:
        self.assertTrue(verifyObject(IThrottleStore, self.store))

    def test_othersEvents(self) -> None:
        """
        A source reads what the others wrote, in order, exactly as written,
        and never its own; its cursor moves past both.
        """
        first = [
            ThrottleEvent("account:alice", 100.25, FAILED),
            ThrottleEvent("address:192.0.2.1", 1234567890.123456, STARTED),
        ]
        own = self.share("a", first)
        self.assertEqual((own.events, own.more), ([], False))
        self.assertGreater(own.cursor, 0)
        b = self.share("b", [])
        self.assertEqual((b.events, b.more), (first, False))
        self.assertEqual(b.cursor, own.cursor)
        b2 = self.share("b", [ThrottleEvent("account:bob", 101.0)], b.cursor)
        self.assertEqual(b2.events, [])
        self.assertGreater(b2.cursor, b.cursor)
        later = [ThrottleEvent("address:192.0.2.1", 1234567890.123456, SUCCEEDED)]
        a = self.share("a", later, own.cursor)
        self.assertEqual(a.events, [ThrottleEvent("account:bob", 101.0, FAILED)])
        self.assertEqual(self.share("b", [], b2.cursor).events, later)
        self.assertEqual(self.share("a", [], a.cursor), ThrottleShare([], a.cursor))

    def test_limit(self) -> None:
        """
        A read stops at its limit and says so; the next one goes on from
        its cursor.  A limit of 0 writes without reading.
        """
        for i in range(3):
            self.share("a", [ThrottleEvent("account:alice", 100.0 + i)], limit=0)
        one = self.share("b", [], 0, limit=2)
        self.assertEqual([e.at for e in one.events], [100.0, 101.0])
        self.assertTrue(one.more)
        two = self.share("b", [], one.cursor, limit=2)
        self.assertEqual([e.at for e in two.events], [102.0])
        self.assertFalse(two.more)
        self.assertEqual(self.share("b", [], 0, limit=0), ThrottleShare([], 0))

    def test_emptyLog(self) -> None:
        self.assertEqual(self.share("a", []), ThrottleShare([], 0))

    def test_flushFailures(self) -> None:
        """
        Events dated at or before the time given are forgotten.
        """
        self.share("a", [ThrottleEvent("account:alice", 100.0)])
        self.share("a", [ThrottleEvent("account:alice", 200.0)])
        self.assertEqual(self.resultOf(self.store.flushFailures(150.0)), 1)
        self.assertEqual(
            self.share("b", []).events, [ThrottleEvent("account:alice", 200.0)]
        )
        self.assertEqual(self.resultOf(self.store.flushFailures(200.0)), 1)
        self.assertEqual(self.share("b", []).events, [])

    def test_badKind(self) -> None:
        self.assertRaises(ValueError, ThrottleEvent, "account:alice", 1.0, "maybe")


class LeaseStoreContract(_StoreContract):
    """
    Tests that every store of bouncers' leases must pass.
    """

    def held(self) -> list[str]:
        records = self.resultOf(self.store.byAvatar("alice"))
        return [r.keycardId for r in records if r.held]

    def test_leaseInterface(self) -> None:
        self.assertTrue(verifyObject(ILeaseStore, self.store))

    def test_renewLease(self) -> None:
        """
        A lease is new the first time, then on record until released, even
        past its expiry.
        """
        self.assertFalse(self.resultOf(self.store.renewLease("b1", 100.0, 110.0)))
        self.assertTrue(self.resultOf(self.store.renewLease("b1", 105.0, 115.0)))
        self.assertTrue(self.resultOf(self.store.renewLease("b1", 120.0, 130.0)))
        self.assertEqual(self.resultOf(self.store.releaseLapsed(129.0)), 0)
        self.assertTrue(self.resultOf(self.store.renewLease("b1", 129.0, 139.0)))
        self.assertEqual(self.resultOf(self.store.releaseLapsed(139.0)), 0)
        self.assertFalse(self.resultOf(self.store.renewLease("b1", 140.0, 150.0)))

    def test_releaseLapsed(self) -> None:
        """
        The held keycards of a lease that ran out are released, once; those
        of a live lease, of no lease, and released ones stay as they were.
        """
        self.resultOf(self.store.renewLease("dead", 100.0, 110.0))
        self.resultOf(self.store.renewLease("live", 100.0, 130.0))
        self.resultOf(self.store.add(record("k1", holderId="dead", seatPool="p")))
        self.resultOf(self.store.add(record("k2", holderId="dead")))
        self.resultOf(self.store.add(record("k3", holderId="live", seatPool="p")))
        self.resultOf(self.store.add(record("k4")))
        self.resultOf(self.store.add(record("k5", holderId="dead")))
        self.resultOf(self.store.release("k5"))
        self.assertEqual(self.resultOf(self.store.releaseLapsed(109.0)), 0)
        self.assertEqual(self.resultOf(self.store.releaseLapsed(110.0)), 2)
        self.assertEqual(self.held(), ["k3", "k4"])
        self.assertEqual(
            self.resultOf(self.store.get("k1")),
            record("k1", holderId="dead", held=False),
        )
        self.assertEqual(self.resultOf(self.store.releaseLapsed(120.0)), 0)
        self.assertFalse(self.resultOf(self.store.renewLease("dead", 120.0, 130.0)))
        self.assertTrue(self.resultOf(self.store.renewLease("live", 120.0, 140.0)))

    def test_lapsedLeaseFreesSeats(self) -> None:
        """
        Seats and per-avatar places held under a lease that ran out are
        free for a keycard issued after it ran out, not before.
        """
        self.resultOf(self.store.renewLease("dead", 100.0, 110.0))
        self.resultOf(
            self.store.addWithin(record("k1", holderId="dead", seatPool="p"), 1, 1)
        )
        self.failureOf(
            self.store.addWithin(record("k2", issued=109.0, seatPool="p"), None, 1),
            QuotaExceeded,
        )
        self.failureOf(
            self.store.addWithin(record("k2", issued=109.0), 1, None), QuotaExceeded
        )
        self.resultOf(
            self.store.addWithin(record("k2", issued=110.0, seatPool="p"), 1, 1)
        )
        self.assertEqual(self.held(), ["k2"])

    def test_lapsedLeaseFreesAvatarSeats(self) -> None:
        """
        An avatar's seats held under a lease that ran out no longer count
        against its share of the pool.
        """
        self.resultOf(self.store.renewLease("dead", 100.0, 110.0))
        self.resultOf(
            self.store.addWithin(
                record("k1", holderId="dead", seatPool="p"), None, 5, 1
            )
        )
        self.failureOf(
            self.store.addWithin(record("k2", issued=109.0, seatPool="p"), None, 5, 1),
            QuotaExceeded,
        )
        self.resultOf(
            self.store.addWithin(record("k2", issued=110.0, seatPool="p"), None, 5, 1)
        )
        self.assertEqual(self.held(), ["k2"])

    def test_holdUnder(self) -> None:
        """
        A keycard taken over by another bouncer is held under its lease and
        no longer released with the old one; a released or unknown keycard
        cannot be taken over.
        """
        self.resultOf(self.store.renewLease("old", 100.0, 110.0))
        self.resultOf(self.store.renewLease("new", 100.0, 130.0))
        self.resultOf(self.store.add(record("k1", holderId="old")))
        self.resultOf(self.store.add(record("k2", holderId="old")))
        self.resultOf(self.store.add(record("k3")))
        self.assertEqual(
            self.resultOf(self.store.holdUnder("k1", "new")),
            record("k1", holderId="new"),
        )
        self.assertEqual(
            self.resultOf(self.store.holdUnder("k3", "new")),
            record("k3", holderId="new"),
        )
        self.assertEqual(self.resultOf(self.store.releaseLapsed(110.0)), 1)
        self.assertEqual(self.held(), ["k1", "k3"])
        self.assertIsNone(self.resultOf(self.store.holdUnder("k2", "new")))
        self.assertIsNone(self.resultOf(self.store.holdUnder("nope", "new")))
        self.assertEqual(self.resultOf(self.store.releaseLapsed(130.0)), 2)
        self.assertEqual(self.held(), [])


class StoreHealthContract(_StoreContract):
    """
    Tests that every store that says how it is (L{IStoreHealth}) must pass.
    """

    def test_healthInterface(self) -> None:
        self.assertTrue(verifyObject(IStoreHealth, self.store))

    def test_upAndNothingQueuedAfterWrites(self) -> None:
        """
        A store that works says so, and once its writes are answered none
        is queued.
        """
        for n in range(3):
            self.resultOf(self.store.add(record(f"health{n}")))
        self.assertIs(self.store.storeUp(), True)
        self.assertEqual(self.store.writesQueued(), 0)


def waiter(ticketId: str, **changes: Any) -> SeatWaiter:
    fields: dict[str, Any] = {
        "ticketId": ticketId,
        "pool": "p",
        "avatarId": "alice",
        "address": "192.0.2.1",
        "lapses": 200.0,
    }
    fields.update(changes)
    return SeatWaiter(**fields)


#: A queue that holds ten waiters, with no share per avatar or address.
TEN = QueueLimits(10)


class SeatQueueContract(_StoreContract):
    """
    The queue of each seat pool (L{ISeatQueue}), and how L{addWithin}
    serves it first.
    """

    def join(
        self, ticketId: str, when: float = 100.0, **changes: Any
    ) -> tuple[int, int]:
        changes.setdefault("avatarId", f"a-{ticketId}")
        changes.setdefault("address", None)
        joined: tuple[int, int] = self.resultOf(
            self.store.joinQueue(waiter(ticketId, **changes), when, TEN)
        )
        return joined

    def places(self, pool: str = "p", when: float = 100.0) -> list[str]:
        return [w.ticketId for w in self.resultOf(self.store.waiters(pool, when))]

    def seat(
        self,
        keycardId: str,
        ticketId: str | None = None,
        poolSize: int = 1,
        **changes: Any,
    ) -> Deferred[None]:
        changes.setdefault("seatPool", "p")
        changes.setdefault("avatarId", f"a-{keycardId}")
        return self.store.addWithin(  # type: ignore[no-any-return]
            record(keycardId, **changes), None, poolSize, None, ticketId
        )

    def test_seatQueueInterface(self) -> None:
        self.assertTrue(verifyObject(ISeatQueue, self.store))

    def test_order(self) -> None:
        """
        Waiters are queued in the order they join, each told its place;
        those behind one that leaves move up; each pool has its own queue.
        """
        self.assertEqual(
            [self.join(t) for t in ("t1", "t2", "t3")], [(1, 1), (2, 2), (3, 3)]
        )
        self.assertEqual(self.join("u1", pool="q"), (1, 1))
        self.assertEqual(self.places(), ["t1", "t2", "t3"])
        self.assertEqual(
            self.resultOf(self.store.waiters("p", 100.0))[0],
            waiter("t1", avatarId="a-t1", address=None),
        )
        self.assertTrue(self.resultOf(self.store.leaveQueue("p", "t2")))
        self.assertFalse(self.resultOf(self.store.leaveQueue("p", "t2")))
        self.assertFalse(self.resultOf(self.store.leaveQueue("q", "t1")))
        self.assertEqual(self.resultOf(self.store.queuePlace("p", "t3", 100.0)), 2)
        self.assertIsNone(self.resultOf(self.store.queuePlace("p", "t2", 100.0)))
        self.assertIsNone(self.resultOf(self.store.queuePlace("q", "t1", 100.0)))
        self.assertEqual(self.places("q"), ["u1"])
        self.assertEqual(self.places("none"), [])

    def test_joinAgainKeepsPlace(self) -> None:
        """
        A ticket that joins again (its client came back) keeps its place,
        with its new lapse time, even in a full queue.
        """
        self.join("t1")
        self.join("t2")
        again = waiter("t1", avatarId="a-t1", address=None, lapses=300.0)
        self.assertEqual(
            self.resultOf(self.store.joinQueue(again, 150.0, QueueLimits(2))), (1, 2)
        )
        self.assertEqual(self.places(when=250.0), ["t1"])

    def test_size(self) -> None:
        """
        A full queue refuses newcomers, naming the limit.
        """
        limits = QueueLimits(2)
        for ticketId in ("t1", "t2"):
            self.resultOf(
                self.store.joinQueue(waiter(ticketId, avatarId=ticketId), 100.0, limits)
            )
        failure = self.failureOf(
            self.store.joinQueue(waiter("t3", avatarId="t3"), 100.0, limits),
            QuotaExceeded,
        )
        self.assertEqual(failure.value.limit, "queue")
        self.assertEqual(failure.getErrorMessage(), "the queue of pool 'p' is full")
        self.assertEqual(self.places(), ["t1", "t2"])
        self.resultOf(self.store.leaveQueue("p", "t1"))
        self.assertEqual(
            self.resultOf(
                self.store.joinQueue(waiter("t3", avatarId="t3"), 100.0, limits)
            ),
            (2, 2),
        )

    def test_shares(self) -> None:
        """
        One avatar, or one address, holds at most its share of the queue;
        waiters with no address share nothing; the queue's size is checked
        first, then the avatar's share, then the address's.
        """
        limits = QueueLimits(5, perAvatar=2, perAddress=2)

        def join(
            ticketId: str, avatarId: str, address: str | None
        ) -> Deferred[tuple[int, int]]:
            w = waiter(ticketId, avatarId=avatarId, address=address)
            return self.store.joinQueue(w, 100.0, limits)  # type: ignore[no-any-return]

        self.resultOf(join("t1", "alice", "192.0.2.1"))
        self.resultOf(join("t2", "alice", "192.0.2.2"))
        avatar = self.failureOf(join("t3", "alice", "192.0.2.3"), QuotaExceeded)
        self.assertEqual(avatar.value.limit, "queue-per-avatar")
        self.assertEqual(
            avatar.getErrorMessage(),
            "too many places in the queue of pool 'p' for this avatar",
        )
        self.resultOf(join("t3", "bob", "192.0.2.1"))
        address = self.failureOf(join("t4", "carol", "192.0.2.1"), QuotaExceeded)
        self.assertEqual(address.value.limit, "queue-per-address")
        self.assertEqual(
            address.getErrorMessage(),
            "too many places in the queue of pool 'p' for this address",
        )
        self.resultOf(join("t4", "carol", None))
        self.resultOf(join("t5", "dave", None))
        full = self.failureOf(join("t6", "alice", "192.0.2.1"), QuotaExceeded)
        self.assertEqual(full.value.limit, "queue")
        # The share is the pool's: another pool's queue is not held back.
        other = waiter("u1", pool="q", avatarId="alice", address="192.0.2.1")
        self.assertEqual(
            self.resultOf(self.store.joinQueue(other, 100.0, limits)), (1, 1)
        )

    def test_lapse(self) -> None:
        """
        A place lapses at its lapse time unless renewed before: a lapsed
        waiter is no longer queued, counts against no bound, and cannot be
        renewed.
        """
        self.join("t1", lapses=110.0)
        self.join("t2", lapses=120.0)
        self.join("t3", lapses=130.0)
        self.assertEqual(self.places(when=109.0), ["t1", "t2", "t3"])
        self.assertEqual(self.places(when=110.0), ["t2", "t3"])
        self.assertEqual(
            self.resultOf(self.store.renewPlace("p", "t2", 140.0, 115.0)), (1, 2)
        )
        self.assertIsNone(self.resultOf(self.store.renewPlace("p", "t1", 140.0, 115.0)))
        self.assertIsNone(self.resultOf(self.store.queuePlace("p", "t1", 115.0)))
        self.assertEqual(self.resultOf(self.store.queuePlace("p", "t3", 135.0)), None)
        self.assertEqual(self.resultOf(self.store.queuePlace("p", "t2", 135.0)), 1)
        one = QueueLimits(1)
        self.failureOf(
            self.store.joinQueue(waiter("t4", lapses=200.0), 139.0, one), QuotaExceeded
        )
        self.assertEqual(
            self.resultOf(self.store.joinQueue(waiter("t4", lapses=200.0), 140.0, one)),
            (1, 1),
        )

    def test_headOnlyGrant(self) -> None:
        """
        Once a seat frees, it goes to the head of the queue: a newcomer
        (no ticket) is refused as C{pool}, a ticket behind the head as
        C{queued}; the head's grant takes it out of the queue, and the next
        waits for the next seat.
        """
        self.resultOf(self.seat("k0"))
        self.join("t1")
        self.join("t2")
        self.assertEqual(
            self.failureOf(self.seat("k1", "t1"), QuotaExceeded).value.limit, "pool"
        )
        self.resultOf(self.store.remove("k0"))
        newcomer = self.failureOf(self.seat("n1"), QuotaExceeded)
        self.assertEqual(newcomer.value.limit, "pool")
        self.assertEqual(newcomer.getErrorMessage(), "no seat left in pool 'p'")
        behind = self.failureOf(self.seat("k2", "t2"), QuotaExceeded)
        self.assertEqual(behind.value.limit, "queued")
        self.assertEqual(
            behind.getErrorMessage(), "others are ahead in the queue of pool 'p'"
        )
        self.resultOf(self.seat("k1", "t1"))
        self.assertEqual(self.resultOf(self.store.get("k1")).seatPool, "p")
        self.assertEqual(self.places(), ["t2"])
        self.assertEqual(
            self.failureOf(self.seat("k2", "t2"), QuotaExceeded).value.limit, "pool"
        )
        self.resultOf(self.store.release("k1"))
        self.resultOf(self.seat("k2", "t2"))
        self.assertEqual(self.places(), [])
        self.resultOf(self.store.remove("k2"))
        self.resultOf(self.seat("n1"))

    def test_seatsTaken(self) -> None:
        """
        The seats of a pool held, as a grant counts them: not those
        released, expired, or held under a lease that ran out.
        """
        self.assertEqual(self.resultOf(self.store.seatsTaken("p", 100.0)), 0)
        self.resultOf(self.seat("k1", poolSize=5))
        self.resultOf(self.seat("k2", poolSize=5, expires=150.0))
        self.resultOf(self.seat("k3", poolSize=5, seatPool="q"))
        self.resultOf(self.seat("k4", poolSize=5))
        self.resultOf(self.store.release("k4"))
        self.assertEqual(self.resultOf(self.store.seatsTaken("p", 100.0)), 2)
        self.assertEqual(self.resultOf(self.store.seatsTaken("p", 150.0)), 1)
        keepsLeases: bool = ILeaseStore.providedBy(self.store)
        if keepsLeases:
            self.resultOf(self.store.renewLease("dead", 100.0, 110.0))
            self.resultOf(self.seat("k5", poolSize=5, holderId="dead"))
            self.assertEqual(self.resultOf(self.store.seatsTaken("p", 105.0)), 3)
            self.assertEqual(self.resultOf(self.store.seatsTaken("p", 110.0)), 2)

    def test_lapsedWaitersDoNotHoldSeats(self) -> None:
        """
        A free seat goes to a newcomer once every waiter's place lapsed; a
        ticket no longer queued is served as a newcomer.
        """
        self.join("t1", lapses=110.0)
        self.failureOf(self.seat("n1", issued=105.0), QuotaExceeded)
        self.resultOf(self.seat("n1", "t1", issued=110.0))
        self.assertEqual(self.places(when=110.0), [])
        self.join("t2", when=111.0, lapses=150.0)
        self.resultOf(self.store.remove("n1"))
        self.failureOf(self.seat("n2", "gone", issued=120.0), QuotaExceeded)
        self.resultOf(self.seat("n2", "t2", issued=120.0))

    def test_queueOnlyWithPoolSize(self) -> None:
        """
        Keycards with no pool, or of a pool with no size, are not held back
        by a pool's queue; another pool's queue holds back nothing.
        """
        self.join("t1")
        self.resultOf(self.store.addWithin(record("k1"), None, None, None))
        self.resultOf(self.store.addWithin(record("k2", seatPool="p"), None, None))
        self.resultOf(self.seat("k3", seatPool="q"))

    def test_concurrentGrants(self) -> None:
        """
        Grants asked for together never exceed the pool, and go to the
        queue's head first, in order.
        """
        for ticketId in ("t1", "t2", "t3"):
            self.join(ticketId)
        ds = [self.seat("n1", poolSize=2), self.seat("k3", "t3", poolSize=2)]
        ds += [self.seat("k2", "t2", poolSize=2), self.seat("k1", "t1", poolSize=2)]
        ds += [self.seat(f"n{i}", poolSize=2) for i in range(2, 6)]
        ds += [self.seat("k2b", "t2", poolSize=2)]
        outcomes = self.outcomesOf(ds)
        granted = [d for d, o in zip(ds, outcomes, strict=True) if o is None]
        self.assertEqual(len(granted), 2, outcomes)
        for outcome in outcomes:
            if outcome is not None:
                self.assertTrue(outcome.check(QuotaExceeded), outcome)
        seats = [
            r.keycardId
            for a in ("a-k1", "a-k2", "a-k2b", "a-k3", "a-n1")
            for r in self.resultOf(self.store.byAvatar(a))
        ]
        self.assertIn("k1", seats)
        self.assertEqual(len(seats), 2, seats)
        self.assertEqual(self.places(), ["t3"])
