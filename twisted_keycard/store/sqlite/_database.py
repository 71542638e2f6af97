"""
An SQLite database worked in one dedicated thread, so the reactor never
waits on the disk.  A write is committed (and, with C{synchronous=FULL}, on
disk) before its L{Deferred} fires.

The thread stops with the reactor (a shutdown trigger) or at L{close}, and
is a daemon thread: a store nobody closes never keeps the process alive.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from threading import Thread
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from twisted_keycard.store.sqlite._schema import connect

_T = TypeVar("_T")


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
        Run C{job} with the connection, in the database's thread.
        """

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

        def stopThread(result: object) -> object:
            self._stopPool()
            return result

        d = self.run(self._closeConnection)
        if self._pool.started:
            d.addBoth(stopThread)
        return d
