"""
Tests for L{twisted_keycard.store.sqlite._store.SQLiteStore}: the store contracts, on a
real file, and what only a database must do: persist, survive SIGKILL, and
count atomically across processes.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_keycard.store import Revocation, ThrottleEvent
from twisted_keycard.store.sqlite._database import COLUMNS, VERSION, toRow
from twisted_keycard.store.sqlite._store import SQLiteStore
from twisted_keycard.tokens._tokens import Keyring

from .storecontract import (
    KeycardStoreContract,
    KeycardStoreLimitsContract,
    KeyringStoreContract,
    LeaseStoreContract,
    RevocationStoreContract,
    SeatQueueContract,
    StoreHealthContract,
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
    SeatQueueContract,
    StoreHealthContract,
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
        schema = FORMAT_4.replace(",\n    family_id TEXT,\n    holder_id TEXT\n", "\n")
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
        self.assertEqual(keycardIndexes(connection), INDEXES)

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
        message = failure.getErrorMessage()
        self.assertIn("format 99, written by a newer release", message)
        self.assertIn("restore the backup made before upgrading", message)
        self.assertNotIn("\n", message)


#: The schema of format 4, as the previous version made it.
FORMAT_4 = """
CREATE TABLE IF NOT EXISTS keycards (
    keycard_id TEXT PRIMARY KEY,
    avatar_id TEXT NOT NULL,
    requester_name TEXT,
    bouncer_name TEXT NOT NULL,
    keycard_type TEXT NOT NULL,
    address TEXT,
    issued REAL NOT NULL,
    duration REAL NOT NULL,
    expires REAL NOT NULL,
    parent_id TEXT,
    seat_pool TEXT,
    held INTEGER NOT NULL DEFAULT 1,
    family_id TEXT,
    holder_id TEXT
);
CREATE INDEX IF NOT EXISTS keycards_avatar ON keycards (avatar_id);
CREATE INDEX IF NOT EXISTS keycards_requester ON keycards (requester_name);
CREATE INDEX IF NOT EXISTS keycards_parent ON keycards (parent_id);
CREATE INDEX IF NOT EXISTS keycards_pool ON keycards (seat_pool);
CREATE INDEX IF NOT EXISTS keycards_expires ON keycards (expires);
CREATE TABLE IF NOT EXISTS revocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    keycard_id TEXT NOT NULL UNIQUE,
    expires REAL NOT NULL,
    revoked_at REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS revocations_expires ON revocations (expires);
CREATE TABLE IF NOT EXISTS failures (
    key TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS failures_key ON failures (key, at);
CREATE INDEX IF NOT EXISTS failures_at ON failures (at);
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT NOT NULL,
    key TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS reservations_id ON reservations (id);
CREATE INDEX IF NOT EXISTS reservations_key ON reservations (key, at);
CREATE INDEX IF NOT EXISTS reservations_at ON reservations (at);
CREATE TABLE IF NOT EXISTS keyring (
    kid TEXT PRIMARY KEY,
    secret BLOB NOT NULL,
    created REAL NOT NULL,
    not_after REAL
);
CREATE TABLE IF NOT EXISTS versions (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    holder_id TEXT PRIMARY KEY,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_expires ON leases (expires);
CREATE INDEX IF NOT EXISTS keycards_family ON keycards (family_id);
CREATE INDEX IF NOT EXISTS keycards_holder ON keycards (holder_id);
PRAGMA user_version = 4;
"""


#: The indexes of the keycards table (besides its primary key's).
INDEXES = {"keycards_avatar", "keycards_seats", "keycards_family"}


def keycardIndexes(connection: sqlite3.Connection) -> set[str]:
    rows = connection.execute("PRAGMA index_list(keycards)")
    return {row[1] for row in rows if not row[1].startswith("sqlite_autoindex")}


class SQLiteIndexTests(SynchronousTestCase):
    """
    The keycards table has the indexes the login path and the revocation
    path need, and no more; a store made by the previous version drops the
    others and keeps working.
    """

    def plan(self, store: SQLiteStore, sql: str, *args: object) -> str:
        rows = self.successResultOf(
            store._db.run(
                lambda c: c.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()
            )
        )
        return " / ".join(str(row[-1]) for row in rows)

    def test_new(self) -> None:
        path = self.mktemp()
        store = SQLiteStore(path, threaded=False)
        self.addCleanup(store.close)
        self.successResultOf(store.count())
        connection = sqlite3.connect(path)
        self.addCleanup(connection.close)
        self.assertEqual(keycardIndexes(connection), INDEXES)

    def test_loginPathIndexed(self) -> None:
        """
        The counts under a cap per avatar and a seat pool, and a family's
        members, are indexed look-ups (the pool's index is partial).
        """
        store = SQLiteStore(self.mktemp(), threaded=False)
        self.addCleanup(store.close)
        self.successResultOf(store.count())
        self.assertIn(
            "keycards_avatar",
            self.plan(
                store,
                "SELECT COUNT(*) FROM keycards"
                " WHERE avatar_id = ? AND held = 1 AND expires > ?",
                "a",
                1.0,
            ),
        )
        self.assertIn(
            "keycards_seats",
            self.plan(
                store,
                "SELECT COUNT(*) FROM keycards"
                " WHERE seat_pool = ? AND held = 1 AND expires > ?",
                "p",
                1.0,
            ),
        )
        self.assertIn(
            "keycards_family",
            self.plan(store, "SELECT * FROM keycards WHERE family_id = ?", "f"),
        )

    def test_format4(self) -> None:
        """
        A store made by the previous version (format 4, seven indexes on
        keycards) loses the four no query needs, its partial seat index
        replaces the full one, and every query still answers.
        """
        path = self.mktemp()
        connection = sqlite3.connect(path)
        connection.executescript(FORMAT_4)
        marks = ",".join("?" * len(COLUMNS.split(",")))
        rows = [
            record("k1", requesterName="r1", parentId="p", familyId="f", holderId="b1"),
            record("k2", seatPool="pool", familyId="f", holderId="b1", expires=90.0),
        ]
        connection.executemany(
            f"INSERT INTO keycards ({COLUMNS}) VALUES ({marks})",  # noqa: S608
            [toRow(r) for r in rows],
        )
        connection.execute(
            "INSERT INTO leases (holder_id, expires) VALUES ('b1', 50.0)"
        )
        connection.commit()
        self.assertEqual(len(keycardIndexes(connection)), 7)
        connection.close()
        store = SQLiteStore(path, threaded=False)
        self.addCleanup(store.close)
        self.assertEqual(self.successResultOf(store.get("k1")), rows[0])
        self.assertEqual(
            [r.keycardId for r in self.successResultOf(store.byRequester("r1"))],
            ["k1", "k2"],
        )
        self.assertEqual(
            [r.keycardId for r in self.successResultOf(store.byParent("p"))], ["k1"]
        )
        self.assertEqual(
            [r.keycardId for r in self.successResultOf(store.byFamily("f"))],
            ["k1", "k2"],
        )
        self.assertEqual(self.successResultOf(store.releaseLapsed(60.0)), 2)
        self.assertEqual(self.successResultOf(store.flushExpired(100.0)), 1)
        self.assertEqual(
            [r.keycardId for r in self.successResultOf(store.byAvatar("alice"))],
            ["k1"],
        )
        connection = sqlite3.connect(path)
        self.addCleanup(connection.close)
        self.assertEqual(keycardIndexes(connection), INDEXES)
        self.assertEqual(
            connection.execute("PRAGMA user_version").fetchone(), (VERSION,)
        )


class SQLiteThrottleLogTests(SynchronousTestCase):
    def test_sharedLog(self) -> None:
        """
        Two stores on one file (two bouncers) share the throttle log.
        """
        path = self.mktemp()
        one = SQLiteStore(path, threaded=False)
        two = SQLiteStore(path, threaded=False)
        self.addCleanup(one.close)
        self.addCleanup(two.close)
        failed = [ThrottleEvent("account:alice", 100.0)]
        self.successResultOf(one.shareThrottle("one", failed, 0, 0))
        shared = self.successResultOf(two.shareThrottle("two", [], 0, 10))
        self.assertEqual(shared.events, failed)

    def test_durableAfterFailedLight(self) -> None:
        """
        Throttle events are written without a disk flush; a durable write
        after them, even after a failing light one, commits with
        C{synchronous=FULL}.
        """
        store = SQLiteStore(self.mktemp(), threaded=False)
        self.addCleanup(store.close)
        failed = [ThrottleEvent("account:alice", 100.0)]
        self.successResultOf(store.shareThrottle("one", failed, 0, 10))
        self.failureResultOf(
            store._db.write(lambda c: c.execute("no such statement"), durable=False),
            sqlite3.OperationalError,
        )
        level = store._db.write(
            lambda c: c.execute("PRAGMA synchronous").fetchone()[0], durable=True
        )
        self.assertEqual(self.successResultOf(level), 2)

    def test_countsFromFormat4(self) -> None:
        """
        The failures and the logins in progress of a store of format 4
        become failed events of the throttle log, and their tables go.
        """
        path = self.mktemp()
        connection = sqlite3.connect(path)
        connection.executescript(FORMAT_4)
        connection.executemany(
            "INSERT INTO failures (key, at) VALUES (?, ?)",
            [("account:alice", 100.0), ("address:a", 100.0)],
        )
        connection.execute(
            "INSERT INTO reservations (id, key, at) VALUES (?, ?, ?)",
            ("r1", "account:alice", 90.0),
        )
        connection.commit()
        connection.close()
        store = SQLiteStore(path, threaded=False)
        self.addCleanup(store.close)
        shared = self.successResultOf(store.shareThrottle("one", [], 0, 10))
        self.assertEqual(
            shared.events,
            [
                ThrottleEvent("account:alice", 90.0),
                ThrottleEvent("account:alice", 100.0),
                ThrottleEvent("address:a", 100.0),
            ],
        )
        tables = self.successResultOf(
            store._db.run(
                lambda c: {r[0] for r in c.execute("SELECT name FROM sqlite_master")}
            )
        )
        self.assertNotIn("failures", tables)
        self.assertNotIn("reservations", tables)


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
    from twisted_keycard.store import Revocation, ThrottleEvent

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


APPENDER = """
    import sys
    from twisted.internet import task
    from twisted.internet.defer import ensureDeferred
    from twisted_keycard.store import ThrottleEvent
    from twisted_keycard.store.sqlite._store import SQLiteStore

    async def main(reactor):
        store = await SQLiteStore.open(sys.argv[1])
        for i in range(40):
            event = ThrottleEvent(f"account:{sys.argv[2]}", 100.0 + i)
            await store.shareThrottle(sys.argv[2], [event], 0, 0)
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

    def test_throttleLogShared(self) -> None:
        """
        Two processes appending to the throttle log at once: a reader sees
        every event of each, in the order each wrote them.
        """
        path = self.mktemp()
        made = SQLiteStore(path, threaded=False)
        self.successResultOf(made.count())
        self.successResultOf(made.close())
        children = [runChild(APPENDER, path, name) for name in ("one", "two")]
        for child in children:
            _, err = child.communicate(timeout=60)
            self.assertEqual(child.returncode, 0, err)
        store = SQLiteStore(path, threaded=False)
        self.addCleanup(store.close)
        shared = self.successResultOf(store.shareThrottle("reader", [], 0, 1000))
        for name in ("one", "two"):
            times = [e.at for e in shared.events if e.key == f"account:{name}"]
            self.assertEqual(times, [100.0 + i for i in range(40)])


class RevocationJournalTests(SynchronousTestCase):
    """
    Every revocation goes to a journal beside the database too, replayed
    when the database is opened: a database restored from an older backup
    gets back the revocations made since (issue 24: a restore un-revoked
    them, and only a key rotation, logging everyone out, made up for it).
    """

    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.path = str(self.dir / "keycard.db")
        self.later = time.time() + 3600

    def store(self) -> SQLiteStore:
        store = SQLiteStore(self.path, threaded=False)
        self.addCleanup(store.close)
        return store

    def revoke(self, store: SQLiteStore, keycardId: str, expires: float) -> None:
        revocation = Revocation(keycardId, expires, expires - 7200, "why")
        self.successResultOf(store.revoke([revocation]))

    def backUp(self, to: Path) -> None:
        source = sqlite3.connect(self.path)
        target = sqlite3.connect(to)
        source.backup(target)
        target.close()
        source.close()

    def restore(self, backup: Path) -> None:
        for suffix in ("-wal", "-shm"):
            Path(self.path + suffix).unlink(missing_ok=True)
        backup.replace(self.path)

    def test_restoreKeepsRevocations(self) -> None:
        store = self.store()
        self.revoke(store, "before", self.later)
        backup = self.dir / "backup.db"
        self.backUp(backup)
        self.revoke(store, "after", self.later)
        self.successResultOf(store.close())
        self.restore(backup)
        again = self.store()
        self.assertTrue(self.successResultOf(again.isRevoked("before")))
        self.assertTrue(self.successResultOf(again.isRevoked("after")))
        # Followers see it as a new revocation.
        batch, _ = self.successResultOf(again.revokedSince(0, 10))
        self.assertEqual({r.keycardId for r in batch}, {"before", "after"})

    def test_journal(self) -> None:
        """
        The journal is private and one line a revocation; at each opening
        the revocations past their expiry and damaged lines leave it, and
        the later expiry of an id revoked twice is kept.
        """
        store = self.store()
        self.revoke(store, "old", time.time() - 10)
        self.revoke(store, "k1", self.later)
        self.revoke(store, "k1", self.later + 60)
        self.successResultOf(store.close())
        journal = Path(self.path).with_suffix(".revocations")
        self.assertEqual(journal.stat().st_mode & 0o777, 0o600)
        self.assertEqual(len(journal.read_bytes().splitlines()), 3)
        with journal.open("ab") as damaged:
            damaged.write(b'["cut sh')
        self.successResultOf(self.store().isRevoked("k1"))
        lines = journal.read_bytes().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertEqual(json.loads(lines[0])[:2], ["k1", self.later + 60])

    def test_inMemory(self) -> None:
        """
        An in-memory database has no journal.
        """
        store = SQLiteStore(":memory:", threaded=False)
        self.addCleanup(store.close)
        self.assertIsNone(store.journal)
        self.revoke(store, "k1", self.later)
        self.assertTrue(self.successResultOf(store.isRevoked("k1")))
