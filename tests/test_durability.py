"""
The durability of every record in every store, row by row as the table of
C{docs/stores.rst} gives it: what survives a power failure (on SQLite, the
C{synchronous} setting in force in the transaction of each write: a real
power failure cannot be made here).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard.store import Revocation, ThrottleEvent
from twisted_keycard.store.sqlite._database import Database
from twisted_keycard.store.sqlite._store import SQLiteStore
from twisted_keycard.tokens import Keyring

from .storecontract import record

#: PRAGMA synchronous, as SQLite reads it back.
NORMAL, FULL = 1, 2


class PowerFailureTests(SynchronousTestCase):
    """
    On SQLite, a write that must survive a power failure commits with
    C{synchronous=FULL}, on disk before it is answered; the others with
    C{NORMAL}, which a process crash does not undo (WAL) but a power
    failure may.
    """

    def setUp(self) -> None:
        self.levels: list[int] = []
        original = Database.write

        def write(
            db: Database,
            job: Callable[[sqlite3.Connection], Any],
            *,
            durable: bool = True,
        ) -> Deferred[Any]:
            def recorded(c: sqlite3.Connection) -> Any:
                result = job(c)
                self.levels.append(c.execute("PRAGMA synchronous").fetchone()[0])
                return result

            return original(db, recorded, durable=durable)

        self.patch(Database, "write", write)
        self.store = SQLiteStore(self.mktemp(), threaded=False)
        self.addCleanup(self.store.close)

    def level(self, d: Deferred[Any]) -> int:
        """
        The setting in force in the transaction of the one write C{d} made.
        """
        self.successResultOf(d)
        [level], self.levels = self.levels, []
        return level

    def test_issuedKeycard(self) -> None:
        """
        A keycard issued with no quota: a power failure may lose it (its
        client logs in again); so may its release or removal.
        """
        self.assertEqual(self.level(self.store.add(record("k1"))), NORMAL)
        self.assertEqual(self.level(self.store.release("k1")), NORMAL)
        self.assertEqual(self.level(self.store.remove("k1")), NORMAL)

    def test_seatGrant(self) -> None:
        """
        A keycard that takes a seat of a pool, or a place under a cap per
        avatar, is on disk when granted: it is never granted twice.  So is
        a renewal (an earlier expiry would free a seat still held).
        """
        pooled = record("k1", seatPool="pool")
        self.assertEqual(self.level(self.store.addWithin(pooled, None, 5)), FULL)
        capped = record("k2")
        self.assertEqual(self.level(self.store.addWithin(capped, 3, None)), FULL)
        self.assertEqual(self.level(self.store.renew("k2", 500.0)), FULL)

    def test_revocation(self) -> None:
        revoked = [Revocation("k1", 200.0, 100.0, "lost laptop")]
        self.assertEqual(self.level(self.store.revoke(revoked)), FULL)

    def test_keyring(self) -> None:
        keyring = Keyring.generate(100.0)
        self.assertEqual(self.level(self.store.saveKeyring(keyring)), FULL)

    def test_mockSecret(self) -> None:
        self.assertEqual(self.level(self.store.mockSecret()), FULL)

    def test_failedLogins(self) -> None:
        """
        Throttle events: a power failure may forget the last ones.
        """
        failed = [ThrottleEvent("account:alice", 100.0)]
        shared = self.store.shareThrottle("b1", failed, 0, 10)
        self.assertEqual(self.level(shared), NORMAL)
        self.assertEqual(self.level(self.store.flushFailures(100.0)), NORMAL)

    def test_leases(self) -> None:
        """
        Lease renewals and releases may be lost (a power failure stops
        every bouncer of the host: their leases lapse anyway); the lease a
        keycard is held under is on disk, since it decides when its seat
        is freed.
        """
        self.assertEqual(self.level(self.store.renewLease("b1", 100.0, 110.0)), NORMAL)
        self.assertEqual(self.level(self.store.releaseLapsed(200.0)), NORMAL)
        self.level(self.store.add(record("k1", holderId="b1")))
        self.assertEqual(self.level(self.store.holdUnder("k1", "b2")), FULL)
