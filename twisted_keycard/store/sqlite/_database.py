"""
An SQLite database worked in one dedicated thread, so the reactor never
waits on the disk.  A write is committed (and, with C{synchronous=FULL}, on
disk) before its L{Deferred} fires.

Writes are committed in groups: those made in one reactor turn, and those
made while an earlier group is being committed, share one transaction, so
that many logins at once pay one disk flush, not one each.  Each write
runs in a savepoint of its own: one that fails is undone alone, and fails
alone.  A read is run after every write made before it.

The thread stops with the reactor (a shutdown trigger) or at L{close}, and
is a daemon thread: a store nobody closes never keeps the process alive.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from threading import Thread
from typing import Any, TypeVar

import attrs
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from twisted_keycard.store.sqlite._schema import connect

_T = TypeVar("_T")


@attrs.define
class _Write:
    """
    A write waiting for its group's commit.
    """

    job: Callable[[sqlite3.Connection], Any]
    durable: bool
    done: Deferred[Any] = attrs.Factory(Deferred)


def _commit(
    connection: sqlite3.Connection, group: list[_Write]
) -> list[Failure | object]:
    """
    Run a group of writes in one immediate transaction, each in a savepoint
    (undone alone if it fails), and commit; with C{synchronous=FULL} if any
    of them is durable.

    @return: each write's result, or its L{Failure}.
    @raise Exception: if the transaction itself fails (begin or commit):
        then no write of the group is kept.
    """
    durable = any(write.durable for write in group)
    if not durable:
        connection.execute("PRAGMA synchronous = NORMAL")
    try:
        connection.execute("BEGIN IMMEDIATE")
        outcomes: list[Failure | object] = []
        try:
            for write in group:
                connection.execute("SAVEPOINT write")
                try:
                    outcomes.append(write.job(connection))
                except Exception:
                    outcomes.append(Failure())  # type: ignore[no-untyped-call]
                    connection.execute("ROLLBACK TO write")
                connection.execute("RELEASE write")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        try:
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
    finally:
        if not durable:
            connection.execute("PRAGMA synchronous = FULL")
    return outcomes


def _daemonThread(*args: Any, **kwargs: Any) -> Thread:
    return Thread(*args, daemon=True, **kwargs)


class Database:
    """
    One connection to an SQLite file, opened on first use, and the thread
    it is used in.
    """

    def __init__(
        self, path: str, reactor: Any = None, *, threaded: bool = True
    ) -> None:
        """
        @param path: the database file; made if missing.
        @param reactor: the reactor the results are delivered in.
        @param threaded: run database work in its own thread (the default);
            C{False} runs it in the caller's thread, for tests only.
        """
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = globalReactor
        self.path = path
        self._reactor = reactor
        self._threaded = threaded
        self._pool = self._newPool()
        self._shutdownTrigger: Any = None
        self._connection: sqlite3.Connection | None = None
        #: Writes not yet sent to the thread, in order.
        self._writes: list[_Write] = []
        #: The call that sends them at the end of this reactor turn.
        self._turnEnd: IDelayedCall | None = None
        #: Groups of writes sent to the thread and not yet answered.
        self._committing = 0

    def _newPool(self) -> ThreadPool:
        pool = ThreadPool(1, 1, name=f"keycard-sqlite:{self.path}")
        pool.threadFactory = _daemonThread  # type: ignore[assignment]
        return pool

    def _startPool(self) -> None:
        """
        Start the thread, and stop it when the reactor shuts down.
        """
        if self._pool.joined:
            self._pool = self._newPool()
        self._pool.start()
        self._shutdownTrigger = self._reactor.addSystemEventTrigger(
            "during", "shutdown", self._stopAtShutdown
        )

    def _stopAtShutdown(self) -> None:
        """
        The reactor is shutting down: close the connection in its thread,
        after the work already queued, and wait for the thread to end.
        """
        self._shutdownTrigger = None
        self._submit()
        if self._pool.started:
            self._pool.callInThread(self._closeConnection)
            self._pool.stop()

    def _closeConnection(self, connection: sqlite3.Connection | None = None) -> None:
        connection = connection or self._connection
        self._connection = None
        if connection is not None:
            connection.close()

    def _stopPool(self) -> None:
        self._pool.stop()
        if self._shutdownTrigger is not None:
            self._reactor.removeSystemEventTrigger(self._shutdownTrigger)
            self._shutdownTrigger = None

    def run(self, job: Callable[[sqlite3.Connection], _T]) -> Deferred[_T]:
        """
        Run C{job} with the connection, in the database's thread, after the
        writes made before it.
        """
        self._submit()
        return self._queue(job)

    def _queue(self, job: Callable[[sqlite3.Connection], _T]) -> Deferred[_T]:
        def inThread() -> _T:
            if self._connection is None:
                self._connection = connect(self.path)
            return job(self._connection)

        if not self._threaded:
            return maybeDeferred(inThread)
        if not self._pool.started:
            self._startPool()
        return deferToThreadPool(self._reactor, self._pool, inThread)

    def write(
        self, job: Callable[[sqlite3.Connection], _T], *, durable: bool = True
    ) -> Deferred[_T]:
        """
        Run C{job} in a transaction, committed before the result is
        delivered; other writes may share the transaction (see the module's
        docstring), each in its own savepoint.

        @param durable: wait for the disk at the commit (C{synchronous=FULL});
            C{False} for data a power failure may lose (counts of failed
            logins), which then costs no disk flush unless a durable write
            shares the commit: the commit is still atomic and seen at once
            by other processes.
        """
        write = _Write(job, durable)
        self._writes.append(write)
        if not self._threaded:
            self._submit()
        elif self._turnEnd is None and not self._committing:
            self._turnEnd = self._reactor.callLater(0, self._submit)
        return write.done

    def _submit(self) -> None:
        """
        Send the writes made so far to the database's thread, as one group.
        """
        if self._turnEnd is not None:
            if self._turnEnd.active():
                self._turnEnd.cancel()
            self._turnEnd = None
        if not self._writes:
            return
        group, self._writes = self._writes, []
        self._committing += 1
        d = self._queue(lambda c: _commit(c, group))
        d.addBoth(self._committed, group)

    def _committed(
        self, outcomes: list[Failure | object] | Failure, group: list[_Write]
    ) -> None:
        """
        A group's transaction ended: answer each of its writes, then send
        the writes made meanwhile (at the end of this turn, with whatever
        the answers lead to).
        """
        self._committing -= 1
        if isinstance(outcomes, Failure):
            outcomes = [outcomes] * len(group)
        for write, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, Failure):
                write.done.errback(outcome)
            else:
                write.done.callback(outcome)
        if self._writes and self._turnEnd is None and not self._committing:
            self._turnEnd = self._reactor.callLater(0, self._submit)

    def close(self) -> Deferred[None]:
        """
        Close the connection and stop the thread.
        """
        if self._connection is None and not self._pool.started:
            return succeed(None)

        def stopThread(result: object) -> object:
            self._stopPool()
            return result

        d = self.run(self._closeConnection)
        if self._pool.started:
            d.addBoth(stopThread)
        return d
