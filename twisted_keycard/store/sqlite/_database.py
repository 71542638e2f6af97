"""
An SQLite database worked in one dedicated thread, so the reactor never
waits on the disk, with the schema of the store and the connection settings
that make it safe to share between processes.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable
from threading import Thread
from typing import Any, TypeVar

import attrs
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from twisted_keycard._files import createPrivateFile
from twisted_keycard.store._interfaces import FAILED, IssuedKeycard

#: 2 added C{keycards.family_id}; 3 the throttle's C{reservations}; 4 the
#: bouncers' leases (C{keycards.holder_id}, C{leases}) and C{versions} (of the
#: keyring); 5 the C{throttle_log} in place of C{failures} and
#: C{reservations} (their rows moved into it), and three indexes on
#: C{keycards} instead of seven (L{DROPPED}).
VERSION = 5

#: Every index of C{keycards} costs each keycard issued a write: it has
#: those that a query on the login path, or a bounded look-up on the
#: revocation path, needs.  The other queries (by requester, by parent, by
#: expiry, by lease) read the whole table, in the store's thread: listing
#: and revoking by requester, a requester gone silent, revoking a keycard
#: whose record expired, the flush every few minutes (which reads before
#: it takes the write lock), and the release of a lapsed lease's keycards.
SCHEMA = """
-- Found by id (the primary key) on the login path: the record written,
-- then read, renewed, released or removed one at a time.
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
-- The keycards an avatar holds: counted on the login path under a cap per
-- avatar (--max-per-avatar), and looked up to revoke an avatar.
CREATE INDEX IF NOT EXISTS keycards_avatar ON keycards (avatar_id);
-- The seats taken of a pool: counted on the login path with seat pools.
-- Partial: a keycard that takes no seat (the default) costs it nothing.
CREATE INDEX IF NOT EXISTS keycards_seats ON keycards (seat_pool)
    WHERE seat_pool IS NOT NULL;
CREATE TABLE IF NOT EXISTS revocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    keycard_id TEXT NOT NULL UNIQUE,
    expires REAL NOT NULL,
    revoked_at REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS revocations_expires ON revocations (expires);
-- Read from a cursor (seq) and flushed from its head (the oldest seq
-- first): no index but the primary key.
CREATE TABLE IF NOT EXISTS throttle_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL
);
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
"""

#: Made once their columns exist, in a store of an earlier format too.
INDEXES = [
    # The members of a family: looked up at every revocation (revoking a
    # keycard revokes its whole family).
    "CREATE INDEX IF NOT EXISTS keycards_family ON keycards (family_id)",
]

#: The indexes of earlier formats no query needs often enough to pay for:
#: dropped when a store of an earlier format is opened.
DROPPED = [
    "keycards_requester",
    "keycards_parent",
    "keycards_pool",
    "keycards_expires",
    "keycards_holder",
]

#: Secrets bouncers sharing the store share besides the keyring (the mock
#: secret); made on first use, so a store made by an earlier version needs
#: no new format.
SECRETS = """
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    secret BLOB NOT NULL
)
"""

#: The queue of each seat pool (see L{twisted_keycard.store.ISeatQueue}),
#: in the order waiters joined (C{seq}); made when the database is opened,
#: so a store made by an earlier version needs no new format (and an
#: earlier version ignores it).
SEAT_QUEUE = [
    """
    CREATE TABLE IF NOT EXISTS seat_queue (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        pool TEXT NOT NULL,
        ticket_id TEXT NOT NULL,
        avatar_id TEXT NOT NULL,
        address TEXT,
        lapses REAL NOT NULL,
        UNIQUE (pool, ticket_id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS seat_queue_order ON seat_queue (pool, seq)",
]

COLUMNS = (
    "keycard_id, avatar_id, requester_name, bouncer_name, keycard_type,"
    " address, issued, duration, expires, parent_id, seat_pool, held, family_id,"
    " holder_id"
)


def connect(path: str) -> sqlite3.Connection:
    """
    Open the database: autocommit (transactions are explicit), WAL so that
    readers never wait for a writer, synchronous=FULL so a commit is on
    disk before it returns (lowered to NORMAL for a group of writes none of
    which is durable, see L{Database.write}), and a busy timeout for other
    processes' locks.
    A new file is made with mode 0600 before SQLite opens it, whatever the
    umask: it holds the token signing keys.  SQLite gives its C{-wal} and
    C{-shm} files the database file's mode.

    A file of an earlier format is upgraded to this one (L{_upgrade}).

    @raise ValueError: if the file holds a newer schema than this version:
        it was written by a newer release, and this one cannot read it.
    """
    if path != ":memory:":
        createPrivateFile(path)
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        connection.execute("PRAGMA busy_timeout = 10000")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        if version > VERSION:
            raise ValueError(
                f"{path} has store format {version}, written by a newer release;"
                f" this version reads formats up to {VERSION}: run the newer"
                " release, or restore the backup made before upgrading"
            )
        if version < VERSION:
            _upgrade(connection, path)
        for statement in SEAT_QUEUE:
            connection.execute(statement)
    except BaseException:
        connection.close()
        raise
    return connection


def _upgrade(connection: sqlite3.Connection, path: str) -> None:
    """
    Make the schema, or bring a store of an earlier format to this one, in
    one transaction: processes racing here wait for the first, then find
    nothing left to do.  The commit is durable (C{synchronous=FULL}).

    @raise ValueError: if a bouncer of an earlier release may still be
        running on the store (L{_refuseWhileLeased}); nothing is changed.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        if version < VERSION:
            _refuseWhileLeased(connection, path, version)
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            # Format 1 to 2: keycards gain their family id (NULL for those
            # issued before, whose kc1 tokens are refused anyway); 3 to 4:
            # the lease they are held under (NULL: held under none).
            _addColumn(connection, "family_id")
            _addColumn(connection, "holder_id")
            for index in INDEXES:
                connection.execute(index)
            for name in DROPPED:
                connection.execute(f"DROP INDEX IF EXISTS {name}")
            _moveThrottleCounts(connection)
            connection.execute(f"PRAGMA user_version = {VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _refuseWhileLeased(connection: sqlite3.Connection, path: str, version: int) -> None:
    """
    Refuse to upgrade a store that a bouncer of an earlier release may still
    be running on: one whose lease (format 4 on) has not lapsed.  Such a
    bouncer would fail every login on the upgraded store (its tables are
    gone), so it must be stopped first; a stopped one's lease lapses after
    its C{--lease-time} (10 s by default).

    @raise ValueError: naming the lease's end.
    """
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    if "leases" not in tables:
        return
    now = time.time()
    (until,) = connection.execute(
        "SELECT MAX(expires) FROM leases WHERE expires > ?", (now,)
    ).fetchone()
    if until is None:
        return
    raise ValueError(
        f"{path} has store format {version}, and a bouncer of an earlier release"
        f" holds a lease on it for {math.ceil(until - now)} s more: stop every"
        " bouncer on this store, then open it again once the lease has lapsed"
        f" (this release upgrades it to format {VERSION}, which a running"
        " earlier bouncer cannot use)"
    )


def _moveThrottleCounts(connection: sqlite3.Connection) -> None:
    """
    Format 4 to 5: the failures counted, and the logins still in progress
    (failures unless they succeed), become failed events of the throttle
    log, so that a bouncer started on the upgraded store counts them.
    """
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    old = [table for table in ("failures", "reservations") if table in tables]
    if not old:
        return
    # Table names from the constant list above.
    rows = " UNION ALL ".join(f"SELECT key, at FROM {t}" for t in old)  # noqa: S608
    connection.execute(
        "INSERT INTO throttle_log (source, key, at, kind)"  # noqa: S608
        f" SELECT '', key, at, ? FROM ({rows}) ORDER BY at",
        (FAILED,),
    )
    for table in old:
        connection.execute(f"DROP TABLE {table}")


def _addColumn(connection: sqlite3.Connection, name: str) -> None:
    """
    Add text column C{name} to the keycards of a store of an earlier format.
    """
    columns = {row[1] for row in connection.execute("PRAGMA table_info(keycards)")}
    if name in columns:
        return
    try:
        connection.execute(f"ALTER TABLE keycards ADD COLUMN {name} TEXT")
    except sqlite3.OperationalError as e:
        if "duplicate column" not in str(e):
            raise


def toRow(record: IssuedKeycard) -> tuple[object, ...]:
    return (
        record.keycardId,
        record.avatarId,
        record.requesterName,
        record.bouncerName,
        record.keycardType,
        record.address,
        record.issued,
        record.duration,
        record.expires,
        record.parentId,
        record.seatPool,
        int(record.held),
        record.familyId,
        record.holderId,
    )


def fromRow(row: tuple[object, ...]) -> IssuedKeycard:
    *fields, held, familyId, holderId = row
    return IssuedKeycard(  # type: ignore[misc]
        *fields,  # type: ignore[arg-type]
        held=bool(held),
        familyId=familyId,  # type: ignore[arg-type]
        holderId=holderId,  # type: ignore[arg-type]
    )


_T = TypeVar("_T")

#: Runs a call in the database's thread, and fires with its result: one
#: trip to the thread (see L{Database}'s C{runner}).
Runner = Callable[[Callable[[], Any]], Deferred[Any]]

#: Seconds a write that is not prompt may wait for another to share its
#: transaction (and its trip to the database's thread).
LATER = 0.01


@attrs.define
class _Write:
    """
    A write waiting for its group's commit.
    """

    job: Callable[[sqlite3.Connection], Any]
    durable: bool
    prompt: bool = True
    done: Deferred[Any] = attrs.Factory(Deferred)


@attrs.define
class _Connection:
    """
    The database's connection, in its thread, and the C{synchronous} level
    it is at (set only when a group needs another).
    """

    connection: sqlite3.Connection
    synchronous: str = "FULL"

    def commit(self, group: list[_Write]) -> list[Failure | object]:
        """
        Run a group of writes in one immediate transaction, each in a
        savepoint (undone alone if it fails) when there are several, and
        commit; with C{synchronous=FULL} if any of them is durable, else
        C{NORMAL}.

        @return: each write's result, or its L{Failure}.
        @raise Exception: if the transaction itself fails (begin or
            commit): then no write of the group is kept.
        """
        connection = self.connection
        wanted = "FULL" if any(write.durable for write in group) else "NORMAL"
        if wanted != self.synchronous:
            connection.execute(f"PRAGMA synchronous = {wanted}")
            self.synchronous = wanted
        connection.execute("BEGIN IMMEDIATE")
        try:
            if len(group) == 1:
                outcomes = [_alone(connection, group[0])]
            else:
                outcomes = [_inSavepoint(connection, write) for write in group]
            if connection.in_transaction:
                connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return outcomes


def _alone(connection: sqlite3.Connection, write: _Write) -> Failure | object:
    """
    Run the one write of a transaction: if it fails, the transaction is
    rolled back (all of it is the write's).
    """
    try:
        outcome: Failure | object = write.job(connection)
    except Exception:
        outcome = Failure()  # type: ignore[no-untyped-call]
        connection.execute("ROLLBACK")
    return outcome


def _inSavepoint(connection: sqlite3.Connection, write: _Write) -> Failure | object:
    """
    Run one write of a group in a savepoint, undone alone if it fails.
    """
    connection.execute("SAVEPOINT write")
    try:
        outcome: Failure | object = write.job(connection)
    except Exception:
        outcome = Failure()  # type: ignore[no-untyped-call]
        connection.execute("ROLLBACK TO write")
    connection.execute("RELEASE write")
    return outcome


def _daemonThread(*args: Any, **kwargs: Any) -> Thread:
    return Thread(*args, daemon=True, **kwargs)


class Database:
    """
    One connection to an SQLite file, opened on first use, and the thread
    it is used in.
    """

    def __init__(
        self,
        path: str,
        reactor: Any = None,
        *,
        threaded: bool = True,
        runner: Runner | None = None,
        onConnect: Callable[[sqlite3.Connection], object] | None = None,
    ) -> None:
        """
        @param path: the database file; made if missing.
        @param reactor: the reactor the results are delivered in.
        @param onConnect: called with the connection once it is open, in
            the database's thread, before any other work.
        @param threaded: run database work in its own thread (the default);
            C{False} runs it in the caller's thread, each write at once, for
            tests only.
        @param runner: for tests, runs each trip to the database's thread in
            place of the thread (writes are grouped by reactor turn as with
            the thread).
        """
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = globalReactor
        self.path = path
        self._reactor = reactor
        self._threaded = threaded
        self._runner = runner
        self._onConnect = onConnect
        self._pool = self._newPool()
        self._shutdownTrigger: Any = None
        self._connection: sqlite3.Connection | None = None
        #: The connection with its level, for the writes (in the thread).
        self._writing: _Connection | None = None
        #: Writes not yet sent to the thread, in order.
        self._writes: list[_Write] = []
        #: The call that sends them at the end of this reactor turn.
        self._turnEnd: IDelayedCall | None = None
        #: Groups of writes sent to the thread and not yet answered.
        self._committing = 0
        #: The writes in those groups.
        self._inFlight = 0
        #: Whether the last group's transaction committed (or none ran).
        self.writing = True

    def seconds(self) -> float:
        """
        The time now, by the reactor's clock.
        """
        seconds: float = self._reactor.seconds()
        return seconds

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
        self._connection = self._writing = None
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
                connection = connect(self.path)
                if self._onConnect is not None:
                    self._onConnect(connection)
                self._connection = connection
            return job(self._connection)

        if self._runner is not None:
            return self._runner(inThread)
        if not self._threaded:
            return maybeDeferred(inThread)
        if not self._pool.started:
            self._startPool()
        return deferToThreadPool(self._reactor, self._pool, inThread)

    def write(
        self,
        job: Callable[[sqlite3.Connection], _T],
        *,
        durable: bool = True,
        prompt: bool = True,
    ) -> Deferred[_T]:
        """
        Run C{job} in a transaction, committed before the result is
        delivered; other writes may share the transaction (see the module's
        docstring), each in its own savepoint.

        @param durable: wait for the disk at the commit (C{synchronous=FULL});
            C{False} for data a power failure may lose (keycards issued
            with no quota, counts of failed logins), which then costs no
            disk flush unless a durable write shares the commit: the commit
            is still atomic, seen at once by other processes, and kept
            through a crash of the process (it is in the WAL file).
        @param prompt: send it to the thread at the end of this reactor
            turn; C{False} for a write nobody waits on (a client gone),
            which waits up to L{LATER} seconds for another write to share
            its transaction and its trip to the thread.
        """
        write = _Write(job, durable, prompt)
        self._writes.append(write)
        if not self._threaded:
            self._submit()
        elif not self._committing:
            self._sendWithin(0.0 if prompt else LATER)
        return write.done

    def _sendWithin(self, delay: float) -> None:
        """
        Send the writes made so far in C{delay} seconds, or sooner if they
        are already to be sent sooner.
        """
        call = self._turnEnd
        if call is not None and call.active():
            if call.getTime() <= self._reactor.seconds() + delay:
                return
            call.cancel()
        self._turnEnd = self._reactor.callLater(delay, self._submit)

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
        self._inFlight += len(group)
        d = self._queue(lambda c: self._commit(c, group))
        d.addBoth(self._committed, group)

    def _commit(
        self, connection: sqlite3.Connection, group: list[_Write]
    ) -> list[Failure | object]:
        """
        Commit C{group}, in the database's thread.
        """
        writing = self._writing
        if writing is None or writing.connection is not connection:
            # A new connection is at synchronous=FULL (see connect).
            writing = self._writing = _Connection(connection)
        return writing.commit(group)

    def _committed(
        self, outcomes: list[Failure | object] | Failure, group: list[_Write]
    ) -> None:
        """
        A group's transaction ended: answer each of its writes, then send
        the writes made meanwhile (at the end of this turn, with whatever
        the answers lead to).
        """
        self._committing -= 1
        self._inFlight -= len(group)
        # The transaction itself failed (begin or commit), or it committed.
        self.writing = not isinstance(outcomes, Failure)
        if isinstance(outcomes, Failure):
            outcomes = [outcomes] * len(group)
        for write, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, Failure):
                write.done.errback(outcome)
            else:
                write.done.callback(outcome)
        if self._writes and not self._committing:
            prompt = any(write.prompt for write in self._writes)
            self._sendWithin(0.0 if prompt else LATER)

    @property
    def queued(self) -> int:
        """
        The writes not yet answered: waiting to be sent to the thread, or
        in a group whose transaction has not ended.
        """
        return len(self._writes) + self._inFlight

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
