"""
The durability of every record in every store, row by row as the table of
C{docs/stores.rst} gives it: what survives a crash of a process (a real
process killed with SIGKILL once its write was answered) and what survives
a power failure (on SQLite, the C{synchronous} setting in force in the
transaction of each write: a real power failure cannot be made here).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard.store import QueueLimits, Revocation, SeatWaiter, ThrottleEvent
from twisted_keycard.store.sqlite._database import Database
from twisted_keycard.store.sqlite._store import SQLiteStore
from twisted_keycard.tokens import Keyring

from ._redis import RedisServer, reactor, spin
from .storecontract import record

if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object

ROOT = Path(__file__).resolve().parent.parent

#: PRAGMA synchronous, as SQLite reads it back.
NORMAL, FULL = 1, 2

#: The settings docs/stores.rst asks of Redis.
DURABLE = ("--appendonly", "yes", "--appendfsync", "always")


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
            db: Database, job: Callable[[sqlite3.Connection], Any], **kw: Any
        ) -> Deferred[Any]:
            def recorded(c: sqlite3.Connection) -> Any:
                result = job(c)
                self.levels.append(c.execute("PRAGMA synchronous").fetchone()[0])
                return result

            return original(db, recorded, **kw)

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

    def test_queuePlaces(self) -> None:
        """
        A place in a seat pool's queue, its renewals and its end may be
        lost: the client comes back with its ticket (at the tail, if its
        place was lost); a lost end lapses after the grace.  The grant that
        ends a place takes the seat, on disk (L{test_seatGrant}).
        """
        waiter = SeatWaiter("t1", "pool", "alice", None, 200.0)
        joined = self.store.joinQueue(waiter, 100.0, QueueLimits(5))
        self.assertEqual(self.level(joined), NORMAL)
        renewed = self.store.renewPlace("pool", "t1", 210.0, 101.0)
        self.assertEqual(self.level(renewed), NORMAL)
        self.assertEqual(self.level(self.store.leaveQueue("pool", "t1")), NORMAL)
        taken = record("k1", seatPool="pool")
        self.assertEqual(self.level(self.store.addWithin(taken, None, 5)), FULL)
        self.assertEqual(self.level(self.store.seatsTaken("pool", 100.0)), NORMAL)


#: Writes one record of a kind to the store named by its first argument
#: (a path, or a Redis URL, then its key-encryption key's file), prints
#: "written" and what to check, then waits to be killed.
WRITER = """
    import sys, time
    from twisted.internet import task
    from twisted.internet.defer import Deferred, ensureDeferred
    from twisted_keycard.store import IssuedKeycard, Revocation, ThrottleEvent
    from twisted_keycard.tokens import Keyring

    def record(keycardId, **kw):
        now = time.time()
        return IssuedKeycard(
            keycardId, "alice", "r1", "b1", "t", None, now, 3600.0, now + 3600, **kw
        )

    async def write(store, what):
        now = time.time()
        if what == "keycard":
            await store.add(record("k1"))
        elif what == "seat":
            await store.addWithin(record("s1", seatPool="pool"), None, 5)
        elif what == "revocation":
            await store.revoke([Revocation("r1", now + 3600, now, "crash test")])
        elif what == "keyring":
            keyring = Keyring.generate(now)
            await store.saveKeyring(keyring)
            return keyring.keys[0].kid
        elif what == "mock":
            return (await store.mockSecret()).hex()
        elif what == "failures":
            event = ThrottleEvent("account:alice", 1234.5)
            await store.shareThrottle("writer", [event], 0, 0)
        elif what == "lease":
            await store.renewLease("b1", now, now + 3600)
        elif what == "place":
            from twisted_keycard.store import QueueLimits, SeatWaiter
            waiter = SeatWaiter("t1", "pool", "alice", None, now + 3600)
            await store.joinQueue(waiter, now, QueueLimits(5))
        return ""

    async def main(reactor):
        target, what = sys.argv[1], sys.argv[2]
        if target.startswith("redis"):
            from twisted_keycard.store.redis import RedisStore
            # The key-encryption key's file: the keyring is wrapped.
            store = await RedisStore.open(target, reactor, keyEncryptionKey=sys.argv[3])
        else:
            from twisted_keycard.store.sqlite import SQLiteStore
            store = await SQLiteStore.open(target, reactor)
        detail = await write(store, what)
        print("written", detail, flush=True)
        await Deferred()

    task.react(lambda reactor: ensureDeferred(main(reactor)))
"""


class _CrashRows(_Base):
    """
    The rows of the table for a crash of a process: each record written
    (and acknowledged) by a process killed with SIGKILL just after is in
    the store when it is read again.  Mixed into a test case that says
    where the store is, what else crashes, and how to wait.
    """

    target: str
    #: What the writer is given after the target and what to write.
    writerArgs: tuple[str, ...] = ()

    def crashed(self) -> None:
        """
        The writer was killed: crash what else the store's row says.
        """

    def open(self) -> Any:
        raise NotImplementedError("each store's test case opens its store")

    def wait(self, d: Deferred[Any]) -> Any:
        raise NotImplementedError("each store's test case says how to wait")

    def crashAfter(self, what: str) -> Any:
        """
        Write C{what} in a process, kill it once the write is acknowledged,
        and open the store again.

        @return: the store, and what the writer said to check.
        """
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(WRITER),
                self.target,
                what,
                *self.writerArgs,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert child.stdout is not None and child.stderr is not None
        line = child.stdout.readline()
        child.kill()
        child.wait()
        errors = child.stderr.read()
        child.stdout.close()
        child.stderr.close()
        self.assertTrue(line.startswith("written"), errors)
        self.crashed()
        return self.open(), line.split()[1:]

    def test_issuedKeycard(self) -> None:
        store, _ = self.crashAfter("keycard")
        self.assertIsNotNone(self.wait(store.get("k1")))

    def test_seatGrant(self) -> None:
        store, _ = self.crashAfter("seat")
        granted = self.wait(store.get("s1"))
        self.assertEqual((granted.seatPool, granted.held), ("pool", True))

    def test_revocation(self) -> None:
        store, _ = self.crashAfter("revocation")
        self.assertTrue(self.wait(store.isRevoked("r1")))

    def test_keyring(self) -> None:
        store, [kid] = self.crashAfter("keyring")
        keyring = self.wait(store.loadKeyring())
        self.assertEqual([key.kid for key in keyring.keys], [kid])

    def test_mockSecret(self) -> None:
        store, [secret] = self.crashAfter("mock")
        self.assertEqual(self.wait(store.mockSecret()).hex(), secret)

    def test_failedLogins(self) -> None:
        """
        Throttle events the store took (a bouncer sends its own at each
        follow interval: those it had not sent die with it).
        """
        store, _ = self.crashAfter("failures")
        shared = self.wait(store.shareThrottle("reader", [], 0, 10))
        self.assertEqual(shared.events, [ThrottleEvent("account:alice", 1234.5)])

    def test_lease(self) -> None:
        store, _ = self.crashAfter("lease")
        now = time.time()
        self.assertTrue(self.wait(store.renewLease("b1", now, now + 10)))

    def test_queuePlace(self) -> None:
        store, _ = self.crashAfter("place")
        self.assertEqual(self.wait(store.queuePlace("pool", "t1", time.time())), 1)


@pytest.mark.integration
class SQLiteCrashTests(_CrashRows, SynchronousTestCase):
    """
    SQLite: a process killed after a write was answered loses nothing, the
    writes a power failure may undo (C{synchronous=NORMAL}) included: they
    are in the WAL file.
    """

    def setUp(self) -> None:
        self.target = self.mktemp()

    def open(self) -> SQLiteStore:
        store = SQLiteStore(self.target, threaded=False)
        self.addCleanup(store.close)
        return store

    def wait(self, d: Deferred[Any]) -> Any:
        return self.successResultOf(d)


@pytest.mark.integration
class RedisCrashTests(_CrashRows, SynchronousTestCase):
    """
    Redis with the settings docs/stores.rst gives (C{appendonly yes},
    C{appendfsync always}): the bouncer's process and then Redis killed
    after a write was answered; Redis started again on its files has it.
    """

    def setUp(self) -> None:
        self.server = RedisServer(
            Path(self.mktemp()).resolve(),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        )
        self.server.start()
        self.addCleanup(self.server.stop)
        self.target = f"{self.server.url}?prefix=crash:"
        from twisted_keycard.store.redis import KeyEncryptionKey

        self.kek = KeyEncryptionKey.generate()
        keyFile = Path(self.mktemp())
        keyFile.write_bytes(self.kek.toFileContent())
        self.writerArgs = (str(keyFile),)

    def crashed(self) -> None:
        self.server.kill()
        self.server.start()

    def open(self) -> Any:
        from twisted_keycard.store.redis import RedisStore

        store = spin(RedisStore.open(self.target, reactor, keyEncryptionKey=self.kek))
        self.addCleanup(lambda: spin(store.close()))
        return store

    def wait(self, d: Deferred[Any]) -> Any:
        return spin(d)
