"""
The SQLite store: issued keycards, revocations and the keyring in one file,
the embedded default.  Several processes may share the file.

Every database call runs in one dedicated thread that owns the connection,
so the reactor never waits on the disk and calls run one at a time, in the
order they were made.  Every write is one C{BEGIN IMMEDIATE} transaction,
committed (with C{synchronous=FULL}: on disk) before its L{Deferred} fires.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TypeVar, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorCore, IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from ._record import IssuedKeycard, Revocation
from ._sqlschema import COLUMNS, SCHEMA, VERSION, fromRow, toRow
from .error import QuotaExceeded
from .interfaces import IKeycardStore, IKeyringStore, IRevocationStore
from .keyring import Keyring, SigningKey

_T = TypeVar("_T")
_log = Logger()

#: How long a call waits for another process's lock before failing.
BUSY_TIMEOUT_MS = 5000

#: Ids per query in L{SQLiteStore.revocationsOf}, under SQLite's limit on
#: bound parameters in one statement.
CHUNK = 500

# Queries are built from constant column names and clauses, never from
# values: every value is a bound parameter.
_ROW = f"SELECT {COLUMNS} FROM keycards"  # noqa: S608
_INSERT = f"INSERT INTO keycards ({COLUMNS}) VALUES ({','.join('?' * 12)})"  # noqa: S608
_REVOCATION = "SELECT keycard_id, expires, revoked_at, reason FROM revocations"


def _connect(path: str) -> sqlite3.Connection:
    """
    Open C{path} in autocommit mode (transactions are explicit), WAL and
    C{synchronous=FULL}, and create or check the schema in one transaction.

    @raise ValueError: if the file holds a newer schema than this code reads.
    """
    c = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        c.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        c.execute("PRAGMA journal_mode = WAL")
        c.execute("PRAGMA synchronous = FULL")

        def schema(c: sqlite3.Connection) -> None:
            (version,) = c.execute("PRAGMA user_version").fetchone()
            if version > VERSION:
                raise ValueError(f"{path} has store format {version}, not {VERSION}")
            if version < VERSION:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        c.execute(statement)
                c.execute(f"PRAGMA user_version = {VERSION}")

        _transaction(c, schema)
    except BaseException:
        c.close()
        raise
    return c


def _transaction(c: sqlite3.Connection, job: Callable[[sqlite3.Connection], _T]) -> _T:
    """
    Run C{job} in one C{BEGIN IMMEDIATE} transaction: it takes the write lock
    first, so what it reads stays true until it commits, in every process.
    """
    c.execute("BEGIN IMMEDIATE")
    try:
        result = job(c)
        c.execute("COMMIT")
    except BaseException:
        if c.in_transaction:
            c.execute("ROLLBACK")
        raise
    return result


def _one(c: sqlite3.Connection, keycardId: str) -> IssuedKeycard | None:
    row = c.execute(f"{_ROW} WHERE keycard_id = ?", (keycardId,)).fetchone()
    return None if row is None else fromRow(row)


def _live(c: sqlite3.Connection, column: str, key: str, when: float) -> int:
    """
    The held keycards with C{column} equal to C{key} not expired at C{when}.
    """
    where = f"{column} = ? AND held AND expires > ?"
    sql = f"SELECT COUNT(*) FROM keycards WHERE {where}"  # noqa: S608
    return int(c.execute(sql, (key, when)).fetchone()[0])


@implementer(IKeycardStore, IRevocationStore, IKeyringStore)
class SQLiteStore:
    """
    A store of issued keycards, revocations and the keyring in an SQLite
    file, shared safely by several processes.  L{close} it when done.
    """

    def __init__(self, path: str, *, reactor: IReactorFromThreads | None = None):
        """
        @param path: the database file, made if missing.
        @param reactor: the reactor results are delivered in; the global one
            if C{None}.
        """
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = cast(IReactorFromThreads, globalReactor)
        self.path = path
        self._reactor = reactor
        self._pool = ThreadPool(1, 1, name=f"keycard-sqlite {path}")
        self._connection: sqlite3.Connection | None = None
        self._closing: Deferred[None] | None = None
        self._trigger: object = None

    @classmethod
    def open(
        cls, path: str, reactor: IReactorFromThreads | None = None
    ) -> Deferred[SQLiteStore]:
        """
        Open the store, creating the file and its schema if need be.

        @return: a L{Deferred} firing with the store, or failing (the store
            then closed) if the file cannot be opened or is too new.
        """
        store = cls(path, reactor=reactor)

        async def opening() -> SQLiteStore:
            try:
                await store._run(lambda c: None)
            except BaseException:
                await store.close()
                raise
            return store

        return Deferred.fromCoroutine(opening())

    def _run(self, job: Callable[[sqlite3.Connection], _T]) -> Deferred[_T]:
        """
        Run C{job} with the connection in the database thread.
        """
        if self._closing is not None:
            return fail(RuntimeError(f"SQLite store {self.path!r} is closed"))
        if not self._pool.started:
            self._pool.start()
            if IReactorCore.providedBy(self._reactor):
                # Its thread would keep the process alive after the reactor.
                core = cast(IReactorCore, self._reactor)
                self._trigger = core.addSystemEventTrigger(
                    "before", "shutdown", self._atShutdown
                )

        def inThread() -> _T:
            if self._connection is None:
                self._connection = _connect(self.path)
            return job(self._connection)

        return deferToThreadPool(self._reactor, self._pool, inThread)

    def _write(self, job: Callable[[sqlite3.Connection], _T]) -> Deferred[_T]:
        return self._run(lambda c: _transaction(c, job))

    def close(self) -> Deferred[None]:
        """
        Close the database once the calls already made are done, and stop
        the thread.  Later calls fail; closing again is harmless.

        @return: a L{Deferred} firing with C{None} once the thread is gone.
        """
        if self._closing is None:
            self._closing = self._shutDown()
        done: Deferred[None] = Deferred()
        self._closing.addCallback(done.callback)
        return done

    def _shutDown(self) -> Deferred[None]:
        if not self._pool.started:
            return succeed(None)

        def closeConnection() -> None:
            if self._connection is not None:
                connection, self._connection = self._connection, None
                connection.close()

        def stopThread(_: None) -> None:
            self._pool.stop()
            if self._trigger is not None:
                trigger, self._trigger = self._trigger, None
                cast(IReactorCore, self._reactor).removeSystemEventTrigger(trigger)

        d = deferToThreadPool(self._reactor, self._pool, closeConnection)
        d.addErrback(lambda f: _log.failure("closing {path}", f, path=self.path))
        return d.addCallback(stopThread)

    def _atShutdown(self) -> Deferred[None]:
        self._trigger = None
        return self.close()

    # Issued keycards

    def add(self, record: IssuedKeycard) -> Deferred[None]:
        return self.addWithin(record, None, None)

    def addWithin(
        self, record: IssuedKeycard, maxPerAvatar: int | None, poolSize: int | None
    ) -> Deferred[None]:
        when, pool = record.issued, record.seatPool

        def job(c: sqlite3.Connection) -> None:
            if (
                maxPerAvatar is not None
                and _live(c, "avatar_id", record.avatarId, when) >= maxPerAvatar
            ):
                raise QuotaExceeded("too many keycards for this avatar")
            if (
                poolSize is not None
                and pool is not None
                and _live(c, "seat_pool", pool, when) >= poolSize
            ):
                raise QuotaExceeded(f"no seat left in pool {pool!r}")
            if _one(c, record.keycardId) is not None:
                raise KeyError(record.keycardId)
            c.execute(_INSERT, toRow(record))

        return self._write(job)

    def get(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        return self._run(lambda c: _one(c, keycardId))

    def remove(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        def job(c: sqlite3.Connection) -> IssuedKeycard | None:
            record = _one(c, keycardId)
            if record is not None:
                c.execute("DELETE FROM keycards WHERE keycard_id = ?", (keycardId,))
            return record

        return self._write(job)

    def _update(
        self, keycardId: str, assign: str, args: tuple[object, ...]
    ) -> Deferred[IssuedKeycard | None]:
        """
        Set C{assign} on one record and return it as it now is.
        """
        sql = f"UPDATE keycards SET {assign} WHERE keycard_id = ?"  # noqa: S608

        def job(c: sqlite3.Connection) -> IssuedKeycard | None:
            if c.execute(sql, (*args, keycardId)).rowcount == 0:
                return None
            return _one(c, keycardId)

        return self._write(job)

    def release(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        return self._update(keycardId, "held = 0, seat_pool = NULL", ())

    def renew(self, keycardId: str, expires: float) -> Deferred[IssuedKeycard | None]:
        return self._update(keycardId, "expires = ?", (expires,))

    def _select(self, where: str, arg: object) -> Deferred[list[IssuedKeycard]]:
        sql = f"{_ROW} WHERE {where} ORDER BY keycard_id"
        return self._run(lambda c: [fromRow(r) for r in c.execute(sql, (arg,))])

    def byAvatar(self, avatarId: str) -> Deferred[list[IssuedKeycard]]:
        return self._select("avatar_id = ?", avatarId)

    def byRequester(self, requesterName: str) -> Deferred[list[IssuedKeycard]]:
        return self._select("requester_name = ?", requesterName)

    def byParent(self, parentId: str) -> Deferred[list[IssuedKeycard]]:
        return self._select("parent_id = ?", parentId)

    def expiredBefore(self, when: float) -> Deferred[list[IssuedKeycard]]:
        return self._select("expires <= ?", when)

    def flushExpired(self, when: float) -> Deferred[int]:
        sql = "DELETE FROM keycards WHERE expires <= ?"
        return self._write(lambda c: c.execute(sql, (when,)).rowcount)

    def count(self) -> Deferred[int]:
        sql = "SELECT COUNT(*) FROM keycards"
        return self._run(lambda c: int(c.execute(sql).fetchone()[0]))

    def counts(self) -> Deferred[dict[str, int]]:
        """
        @return: a L{Deferred} firing with the number of C{keycards} and of
            C{revocations}, for status displays.
        """
        sql = (
            "SELECT (SELECT COUNT(*) FROM keycards), (SELECT COUNT(*) FROM revocations)"
        )

        def job(c: sqlite3.Connection) -> dict[str, int]:
            keycards, revocations = c.execute(sql).fetchone()
            return {"keycards": keycards, "revocations": revocations}

        return self._run(job)

    # Revocations

    def revoke(self, revocations: Sequence[Revocation]) -> Deferred[int]:
        rows = [(r.keycardId, r.expires, r.revokedAt, r.reason) for r in revocations]

        def job(c: sqlite3.Connection) -> int:
            added = 0
            for row in rows:
                known = c.execute(
                    "SELECT expires FROM revocations WHERE keycard_id = ?", row[:1]
                ).fetchone()
                if known is None:
                    added += 1
                elif known[0] >= row[1]:
                    continue
                # REPLACE deletes the old row: the new one gets a new seq, so
                # followers see the later expiry.
                c.execute(
                    "INSERT OR REPLACE INTO revocations"
                    " (keycard_id, expires, revoked_at, reason) VALUES (?, ?, ?, ?)",
                    row,
                )
            return added

        return self._write(job)

    def isRevoked(self, keycardId: str) -> Deferred[bool]:
        sql = "SELECT 1 FROM revocations WHERE keycard_id = ?"
        return self._run(lambda c: c.execute(sql, (keycardId,)).fetchone() is not None)

    def revocationsOf(self, keycardIds: Sequence[str]) -> Deferred[list[Revocation]]:
        ids = list(dict.fromkeys(keycardIds))
        if not ids:
            return succeed([])

        def job(c: sqlite3.Connection) -> list[Revocation]:
            found: list[Revocation] = []
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start : start + CHUNK]
                sql = (
                    f"{_REVOCATION} WHERE keycard_id IN ({','.join('?' * len(chunk))})"
                )
                found.extend(Revocation(*row) for row in c.execute(sql, chunk))
            return found

        return self._run(job)

    def revokedSince(
        self, cursor: int, limit: int
    ) -> Deferred[tuple[list[Revocation], int]]:
        sql = (
            "SELECT seq, keycard_id, expires, revoked_at, reason FROM revocations"
            " WHERE seq > ? ORDER BY seq LIMIT ?"
        )

        def job(c: sqlite3.Connection) -> tuple[list[Revocation], int]:
            rows = c.execute(sql, (cursor, max(limit, 0))).fetchall()
            if not rows:
                return [], max(cursor, 0)
            return [Revocation(*row[1:]) for row in rows], int(rows[-1][0])

        return self._run(job)

    def flushRevocations(self, when: float) -> Deferred[int]:
        sql = "DELETE FROM revocations WHERE expires <= ?"
        return self._write(lambda c: c.execute(sql, (when,)).rowcount)

    # Keyring

    def loadKeyring(self) -> Deferred[Keyring | None]:
        sql = "SELECT kid, secret, created, not_after FROM keyring ORDER BY rowid"

        def job(c: sqlite3.Connection) -> Keyring | None:
            keys = tuple(
                SigningKey(kid, bytes(secret), created, notAfter)
                for kid, secret, created, notAfter in c.execute(sql)
            )
            return Keyring(keys) if keys else None

        return self._run(job)

    def saveKeyring(self, keyring: Keyring) -> Deferred[None]:
        rows = [(k.kid, k.secret, k.created, k.notAfter) for k in keyring.keys]

        def job(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM keyring")
            # Inserted in the keyring's order: loadKeyring reads by rowid.
            c.executemany(
                "INSERT INTO keyring (kid, secret, created, not_after)"
                " VALUES (?, ?, ?, ?)",
                rows,
            )

        return self._write(job)
