"""
An SQLite database worked in one dedicated thread, so the reactor never
waits on the disk.  A write is committed (and, with C{synchronous=FULL}, on
disk) before its L{Deferred} fires.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from twisted_keycard.store.sqlite._schema import connect

_T = TypeVar("_T")


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
        self._pool = ThreadPool(1, 1, name=f"keycard-sqlite:{path}")
        self._connection: sqlite3.Connection | None = None

    def run(self, job: Callable[[sqlite3.Connection], _T]) -> Deferred[_T]:
        """
        Run C{job} with the connection, in the database's thread.
        """

        def inThread() -> _T:
            if self._connection is None:
                self._connection = connect(self.path)
            return job(self._connection)

        if not self._threaded:
            return maybeDeferred(inThread)
        if not self._pool.started:
            self._pool.start()
        return deferToThreadPool(self._reactor, self._pool, inThread)

    def write(
        self, job: Callable[[sqlite3.Connection], _T], *, durable: bool = True
    ) -> Deferred[_T]:
        """
        Run C{job} in one immediate transaction, committed before the
        result is delivered.

        @param durable: wait for the disk at the commit (C{synchronous=FULL});
            C{False} for data a power failure may lose (counts of failed
            logins), which then costs no disk flush: the commit is still
            atomic and seen at once by other processes.
        """

        def transaction(connection: sqlite3.Connection) -> _T:
            if not durable:
                connection.execute("PRAGMA synchronous = NORMAL")
            try:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    result = job(connection)
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                connection.execute("COMMIT")
            finally:
                if not durable:
                    connection.execute("PRAGMA synchronous = FULL")
            return result

        return self.run(transaction)

    def close(self) -> Deferred[None]:
        """
        Close the connection and stop the thread.
        """
        if self._connection is None and not self._pool.started:
            return succeed(None)

        def closeConnection(connection: sqlite3.Connection) -> None:
            connection.close()
            self._connection = None

        def stopThread(result: object) -> object:
            self._pool.stop()
            return result

        d = self.run(closeConnection)
        if self._pool.started:
            d.addBoth(stopThread)
        return d
