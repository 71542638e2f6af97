"""
Tests for L{twisted_keycard.store.sqlite._store.SQLiteStore}: the store contracts, on a
real file, and what only a database must do: persist, survive SIGKILL, and
count atomically across processes.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_keycard.store import Revocation
from twisted_keycard.store.sqlite._database import COLUMNS, SCHEMA, VERSION, toRow
from twisted_keycard.store.sqlite._store import SQLiteStore
from twisted_keycard.tokens._tokens import Keyring

from .storecontract import (
    KeycardStoreContract,
    KeycardStoreLimitsContract,
    KeyringStoreContract,
    LeaseStoreContract,
    RevocationStoreContract,
    ThrottleStoreContract,
    record,
)

reactor: Any = _reactor
ROOT = Path(__file__).resolve().parent.parent


class SQLiteContractTests(
    KeycardStoreContract,
    KeycardStoreLimitsContract,
    RevocationStoreContract,
    KeyringStoreContract,
    ThrottleStoreContract,
    LeaseStoreContract,
    SynchronousTestCase,
):
    """
    The contracts, with the database work run inline.
    """

    def makeStore(self) -> SQLiteStore:
        store = SQLiteStore(self.mktemp(), threaded=False)
        self.addCleanup(store.close)
        return store


class SQLitePersistenceTests(SynchronousTestCase):
    def test_reopen(self) -> None:
        path = self.mktemp()
        store = SQLiteStore(path, threaded=False)
        keyring = Keyring.generate(100.0)
        self.successResultOf(store.add(record("k1")))
        self.successResultOf(store.revoke([Revocation("k2", 200.0, 100.0, "why")]))
        self.successResultOf(store.saveKeyring(keyring))
        self.successResultOf(store.close())
        again = SQLiteStore(path, threaded=False)
        self.addCleanup(again.close)
        self.assertEqual(self.successResultOf(again.get("k1")), record("k1"))
        self.assertTrue(self.successResultOf(again.isRevoked("k2")))
        self.assertEqual(self.successResultOf(again.loadKeyring()), keyring)

    def test_format1Upgraded(self) -> None:
        """
        A store of format 1 (before families) is upgraded when opened: its
        keycards are kept, with no family, and new ones have theirs.
        """
        import sqlite3

        path = self.mktemp()
        connection = sqlite3.connect(path)
        schema = SCHEMA.replace(",\n    family_id TEXT,\n    holder_id TEXT\n", "\n")
        schema = schema[: schema.index("CREATE TABLE IF NOT EXISTS versions")]
        self.assertNotIn("family_id", schema)
        connection.executescript(schema)
        self.assertTrue(COLUMNS.endswith(", held, family_id, holder_id"))
        connection.execute(
            "INSERT INTO keycards (keycard_id, avatar_id, requester_name,"
            " bouncer_name, keycard_type, address, issued, duration, expires,"
            " parent_id, seat_pool, held) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            toRow(record("k1"))[:-2],
        )
        connection.execute("PRAGMA user_version = 1")
        connection.commit()
        connection.close()
        for _ in range(2):
            store = SQLiteStore(path, threaded=False)
            self.assertEqual(self.successResultOf(store.get("k1")), record("k1"))
            self.successResultOf(store.add(record("k2", familyId="k2")))
            self.assertEqual(
                [r.keycardId for r in self.successResultOf(store.byFamily("k2"))],
                ["k2"],
            )
            self.successResultOf(store.remove("k2"))
            self.successResultOf(store.renewLease("b", 100.0, 110.0))
            self.assertEqual(self.successResultOf(store.keyringVersion()), 0)
            self.successResultOf(store.close())
        connection = sqlite3.connect(path)
        self.addCleanup(connection.close)
        self.assertEqual(
            connection.execute("PRAGMA user_version").fetchone(), (VERSION,)
        )
        indexes = [row[1] for row in connection.execute("PRAGMA index_list(keycards)")]
        self.assertIn("keycards_family", indexes)
        self.assertIn("keycards_holder", indexes)

    def test_mockSecretKept(self) -> None:
        """
        The mock secret is the same for another connection to the file (a
        restarted or another bouncer) and survives closing it.
        """
        path = self.mktemp()
        first = SQLiteStore(path, threaded=False)
        other = SQLiteStore(path, threaded=False)
        self.addCleanup(other.close)
        secret = self.successResultOf(first.mockSecret())
        self.assertEqual(self.successResultOf(other.mockSecret()), secret)
        self.successResultOf(first.close())
        again = SQLiteStore(path, threaded=False)
        self.addCleanup(again.close)
        self.assertEqual(self.successResultOf(again.mockSecret()), secret)

    def test_newerFormatRefused(self) -> None:
        path = self.mktemp()
        import sqlite3

        connection = sqlite3.connect(path)
        connection.execute("PRAGMA user_version = 99")
        connection.close()
        store = SQLiteStore(path, threaded=False)
        failure = self.failureResultOf(store.count(), ValueError)
        self.assertIn("format 99", failure.getErrorMessage())


class SQLiteReservationTests(SynchronousTestCase):
    def test_sharedReservations(self) -> None:
        """
        Two stores on one file (two bouncers) share the reservations: what
        one reserved counts against the other's limits.
        """
        path = self.mktemp()
        one = SQLiteStore(path, threaded=False)
        two = SQLiteStore(path, threaded=False)
        self.addCleanup(one.close)
        self.addCleanup(two.close)
        limits = {"account:alice": 3}
        for i in range(2):
            self.assertTrue(
                self.successResultOf(one.reserve(f"one{i}", limits, 0.0, 100.0))
            )
        self.assertTrue(self.successResultOf(two.reserve("two0", limits, 0.0, 100.0)))
        self.assertFalse(self.successResultOf(two.reserve("two1", limits, 0.0, 100.0)))
        self.successResultOf(one.settle("one0", False))
        self.assertTrue(self.successResultOf(two.reserve("two2", limits, 0.0, 100.0)))

    def test_throttleWritesLeaveDurability(self) -> None:
        """
        Throttle counts are written without a disk flush; the connection is
        back to C{synchronous=FULL} for everything else, even after a
        failing write.
        """
        store = SQLiteStore(self.mktemp(), threaded=False)
        self.addCleanup(store.close)
        self.assertTrue(
            self.successResultOf(store.reserve("r1", {"account:a": 1}, 0.0, 1.0))
        )
        self.failureResultOf(
            store._throttleWrite(lambda c: c.execute("no such statement")),
            sqlite3.OperationalError,
        )
        connection = store._db._connection
        assert connection is not None
        self.assertEqual(connection.execute("PRAGMA synchronous").fetchone(), (2,))

    def test_upgradeFromFormat1(self) -> None:
        """
        A store made by the previous version (format 1, no reservations)
        gets its reservations table when opened.
        """
        path = self.mktemp()
        made = SQLiteStore(path, threaded=False)
        self.successResultOf(made.recordFailure(["account:alice"], 100.0))
        self.successResultOf(made.close())
        connection = sqlite3.connect(path)
        connection.execute("DROP TABLE reservations")
        connection.execute("PRAGMA user_version = 1")
        connection.close()
        store = SQLiteStore(path, threaded=False)
        self.addCleanup(store.close)
        limits = {"account:alice": 2}
        self.assertTrue(self.successResultOf(store.reserve("r1", limits, 0.0, 101.0)))
        self.assertFalse(self.successResultOf(store.reserve("r2", limits, 0.0, 102.0)))


class SQLiteThreadedTests(TestCase):
    """
    The store as used in a service: work in its thread, the reactor free.
    """

    def test_threaded(self) -> Deferred[None]:
        async def go() -> None:
            store = await SQLiteStore.open(self.mktemp())
            try:
                await store.add(record("k1"))
                await store.revoke(
                    [Revocation(f"r{i}", 200.0, 100.0) for i in range(50)]
                )
                checks = [store.isRevoked(f"r{i}") for i in range(0, 100, 2)]
                results = [await d for d in checks]
                self.assertEqual(results, [True] * 25 + [False] * 25)
                self.assertEqual(await store.get("k1"), record("k1"))
            finally:
                await store.close()

        return ensureDeferred(go())


def runChild(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


REVOKER = """
    import sys
    from twisted.internet import task
    from twisted.internet.defer import ensureDeferred
    from twisted_keycard.store.sqlite._store import SQLiteStore
    from twisted_keycard.store import Revocation

    async def main(reactor):
        store = await SQLiteStore.open(sys.argv[1])
        i = 0
        while True:
            await store.revoke([Revocation(f"id{i}", 1e12, 1.0, "crash test")])
            print(f"id{i}", flush=True)
            i += 1

    task.react(lambda r: ensureDeferred(main(r)))
"""

CLAIMER = """
    import sys
    from twisted.internet import task
    from twisted.internet.defer import ensureDeferred
    from twisted_keycard.error import QuotaExceeded
    from twisted_keycard.store.sqlite._store import SQLiteStore
    from twisted_keycard.store import IssuedKeycard

    async def main(reactor):
        store = await SQLiteStore.open(sys.argv[1])
        granted = 0
        for i in range(40):
            record = IssuedKeycard(
                f"{sys.argv[2]}-{i}", f"avatar-{i % 3}", "r", sys.argv[2], "t", None,
                100.0, 60.0, 160.0, None, "pool",
            )
            try:
                await store.addWithin(record, 4, 7)
            except QuotaExceeded:
                continue
            granted += 1
        print(granted, flush=True)
        await store.close()

    task.react(lambda r: ensureDeferred(main(r)))
"""


RESERVER = """
    import sys
    from twisted.internet import task
    from twisted.internet.defer import ensureDeferred
    from twisted_keycard.store.sqlite._store import SQLiteStore

    async def main(reactor):
        store = await SQLiteStore.open(sys.argv[1])
        taken = 0
        for i in range(40):
            limits = {"account:alice": 7, f"address:{sys.argv[2]}": 100}
            if await store.reserve(f"{sys.argv[2]}-{i}", limits, 0.0, 100.0):
                taken += 1
        print(taken, flush=True)
        await store.close()

    task.react(lambda r: ensureDeferred(main(r)))
"""


@pytest.mark.integration
class SQLiteProcessTests(SynchronousTestCase):
    """
    Real processes on one database file.
    """

    def test_noRevocationLostOnSIGKILL(self) -> None:
        """
        Every revocation whose call returned before the process was killed
        with SIGKILL is in the store afterwards.
        """
        path = self.mktemp()
        child = runChild(REVOKER, path)
        assert child.stdout is not None
        printed = []
        for line in child.stdout:
            printed.append(line.strip())
            if len(printed) >= 30:
                break
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        assert child.stderr is not None
        child.stderr.close()
        store = SQLiteStore(path, threaded=False)
        self.addCleanup(store.close)
        for keycardId in printed:
            self.assertTrue(self.successResultOf(store.isRevoked(keycardId)), keycardId)

    def test_poolNeverOverGranted(self) -> None:
        """
        Two processes racing to take seats of one pool of 7 (and at most 4
        per avatar) never grant more than 7 in all.
        """
        path = self.mktemp()
        made = SQLiteStore(path, threaded=False)
        self.successResultOf(made.count())
        self.successResultOf(made.close())
        children = [runChild(CLAIMER, path, name) for name in ("one", "two")]
        granted = []
        for child in children:
            out, err = child.communicate(timeout=60)
            self.assertEqual(child.returncode, 0, err)
            granted.append(int(out))
        self.assertEqual(sum(granted), 7)
        store = SQLiteStore(path, threaded=False)
        self.addCleanup(store.close)
        self.assertEqual(self.successResultOf(store.count()), 7)
        for avatar in range(3):
            self.assertLessEqual(
                len(self.successResultOf(store.byAvatar(f"avatar-{avatar}"))), 4
            )

    def test_reservationsNeverOverTaken(self) -> None:
        """
        Two processes racing to reserve logins of one account with a limit
        of 7 never take more than 7 in all.
        """
        path = self.mktemp()
        made = SQLiteStore(path, threaded=False)
        self.successResultOf(made.count())
        self.successResultOf(made.close())
        children = [runChild(RESERVER, path, name) for name in ("one", "two")]
        taken = []
        for child in children:
            out, err = child.communicate(timeout=60)
            self.assertEqual(child.returncode, 0, err)
            taken.append(int(out))
        self.assertEqual(sum(taken), 7)
