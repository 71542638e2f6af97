"""
Tests for the SQLite database's group commit
(L{twisted_keycard.store.sqlite._database}): the writes of one reactor turn,
and those made while a group commits, share one transaction; each is
answered after that commit; one that fails is undone alone; a read runs
after the writes made before it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard.store.sqlite._database import Database

from .test_store_lifecycle import ThreadlessReactor

#: Seconds the database's thread has to answer; never reached when it works.
DEADLINE = 10.0


class SignallingReactor(ThreadlessReactor):
    """
    A L{ThreadlessReactor} that lets the test wait, on an event rather than
    a clock, for the database's thread to hand a result over.
    """

    def __init__(self) -> None:
        super().__init__()
        self.handed = threading.Event()

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:
        super().callFromThread(f, *args)
        self.handed.set()


class GroupCommitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = SignallingReactor()
        self.path = self.mktemp()
        self.database = Database(self.path, self.reactor)
        self.statements: list[str] = []

        def prepare(c: sqlite3.Connection) -> None:
            c.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER UNIQUE)")
            c.set_trace_callback(self.statements.append)

        self.settle(self.database.run(prepare))
        self.addCleanup(self.close)

    def close(self) -> None:
        self.settle(self.database.close())

    def settle(self, d: Deferred[Any]) -> Any:
        """
        Run the reactor's turn ends and take what the thread hands over
        until C{d} has fired.
        """
        results: list[Any] = []
        d.addBoth(results.append)
        while not results:
            self.reactor.advance(0)
            if not results and not self.reactor.delivered:
                self.assertTrue(self.reactor.handed.wait(DEADLINE))
            self.reactor.handed.clear()
            self.reactor.deliver()
        return results[0]

    def insert(self, n: int, durable: bool = True) -> Deferred[int]:
        def job(c: sqlite3.Connection) -> int:
            c.execute("INSERT INTO t (n) VALUES (?)", (n,))
            return n

        return self.database.write(job, durable=durable)

    def committed(self) -> list[int]:
        """
        The rows as another connection sees them: committed ones only.
        """
        other = sqlite3.connect(self.path)
        try:
            return [n for (n,) in other.execute("SELECT n FROM t ORDER BY n")]
        finally:
            other.close()

    def transactions(self) -> int:
        return self.statements.count("COMMIT")

    def test_oneTransactionPerTurn(self) -> None:
        """
        The writes of one turn share one transaction, and each is answered
        once it is committed, with its own result.
        """
        seen: list[list[int]] = []

        def look(n: int) -> int:
            seen.append(self.committed())
            return n

        writes = [self.insert(n).addCallback(look) for n in range(10)]
        self.assertEqual([self.settle(d) for d in writes], list(range(10)))
        self.assertEqual(self.transactions(), 1)
        self.assertEqual(seen, [list(range(10))] * 10)

    def test_failingWriteAlone(self) -> None:
        """
        A write that fails is undone and fails alone; the others of its
        group are committed.
        """

        def failing(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO t (n) VALUES (100)")
            c.execute("INSERT INTO t (n) VALUES (1)")

        first = self.insert(1)
        bad = self.database.write(failing)
        last = self.insert(2)
        self.assertEqual(self.settle(first), 1)
        self.assertIsInstance(self.settle(bad).value, sqlite3.IntegrityError)
        self.assertEqual(self.settle(last), 2)
        self.assertEqual(self.transactions(), 1)
        self.assertEqual(self.committed(), [1, 2])

    def test_writesWhileCommitting(self) -> None:
        """
        Writes made, over several turns, while a group is being committed
        wait for it, then share the next transaction.
        """
        release = threading.Event()

        def slow(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO t (n) VALUES (0)")
            self.assertTrue(release.wait(DEADLINE))

        first = self.database.write(slow)
        self.reactor.advance(0)
        later = []
        for n in range(1, 4):
            later.append(self.insert(n))
            self.reactor.advance(0)
        release.set()
        self.settle(first)
        self.assertEqual([self.settle(d) for d in later], [1, 2, 3])
        self.assertEqual(self.transactions(), 2)

    def test_queued(self) -> None:
        """
        L{Database.queued} counts the writes not yet answered: those in the
        group being committed and those waiting behind it.
        """
        release = threading.Event()

        def slow(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO t (n) VALUES (0)")
            self.assertTrue(release.wait(DEADLINE))

        self.assertEqual(self.database.queued, 0)
        first = self.database.write(slow)
        self.assertEqual(self.database.queued, 1)
        self.reactor.advance(0)
        later = [self.insert(n) for n in range(1, 4)]
        self.reactor.advance(0)
        self.assertEqual(self.database.queued, 4)
        release.set()
        self.settle(first)
        [self.settle(d) for d in later]
        self.assertEqual(self.database.queued, 0)

    def test_writingAfterFailedTransaction(self) -> None:
        """
        L{Database.writing} is false once a group's transaction fails (here
        another connection holds the write lock), and true again once one
        commits.
        """
        self.settle(self.database.run(lambda c: c.execute("PRAGMA busy_timeout = 0")))
        self.assertTrue(self.database.writing)
        other = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(other.close)
        other.execute("BEGIN IMMEDIATE")
        failed = self.settle(self.insert(1))
        self.assertIsInstance(failed.value, sqlite3.OperationalError)
        self.assertFalse(self.database.writing)
        self.assertEqual(self.database.queued, 0)
        other.execute("ROLLBACK")
        self.assertEqual(self.settle(self.insert(2)), 2)
        self.assertTrue(self.database.writing)

    def test_readAfterWrite(self) -> None:
        """
        A read made in the same turn as a write runs after it.
        """
        written = self.insert(7)
        read = self.database.run(lambda c: c.execute("SELECT n FROM t").fetchall())
        self.assertEqual(self.settle(read), [(7,)])
        self.assertEqual(self.settle(written), 7)

    def test_durability(self) -> None:
        """
        A group commits with C{synchronous=FULL} when any of its writes is
        durable, else with C{NORMAL}; the level is set only when it
        changes.
        """

        def level() -> int:
            d = self.database.run(lambda c: c.execute("PRAGMA synchronous").fetchone())
            return int(self.settle(d)[0])

        self.assertEqual(level(), 2)
        self.settle(self.insert(1, durable=False))
        self.assertIn("PRAGMA synchronous = NORMAL", self.statements)
        self.assertEqual(level(), 1)
        del self.statements[:]
        self.settle(self.insert(2, durable=False))
        self.assertEqual(
            [s for s in self.statements if s.startswith("PRAGMA synchronous =")], []
        )
        writes = [self.insert(3, durable=False), self.insert(4)]
        for d in writes:
            self.settle(d)
        self.assertIn("PRAGMA synchronous = FULL", self.statements)
        self.assertEqual(level(), 2)

    def test_oneWriteNoSavepoint(self) -> None:
        """
        A group of one write needs no savepoint: if it fails, the whole
        transaction is undone, and the next write commits.
        """
        self.settle(self.insert(1))
        self.assertNotIn("SAVEPOINT write", self.statements)
        failed = self.insert(1)
        self.assertIsInstance(self.settle(failed).value, sqlite3.IntegrityError)
        self.assertEqual(self.settle(self.insert(2)), 2)
        rows = self.database.run(lambda c: c.execute("SELECT n FROM t").fetchall())
        self.assertEqual(self.settle(rows), [(1,), (2,)])


class UnthreadedTests(SynchronousTestCase):
    def test_eachWriteAtOnce(self) -> None:
        """
        Without a thread (for tests), each write is committed at once, in
        the caller's thread.
        """
        database = Database(self.mktemp(), ThreadlessReactor(), threaded=False)
        self.addCleanup(database.close)
        d = database.write(lambda c: c.execute("CREATE TABLE t (n)").rowcount)
        self.assertEqual(self.successResultOf(d), -1)
