"""
The SQLite store: issued keycards, revocations, failed logins, leases and
the keyring in one file, the embedded default.  Several bouncer processes
may share the file.

Database work runs in the L{Database}'s own thread; writes made together
are committed in one transaction (each answered once committed: on disk
for those a power failure must not undo, see L{SQLiteStore}), and
revocation checks that arrive together are answered by one query.  The SQL
of each interface is a group of functions here, each run inside the
database's thread.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from zope.interface import implementer

from twisted_keycard._mocks import SECRET_BYTES
from twisted_keycard.store._interfaces import (
    BatchedLookups,
    IKeycardStore,
    IKeyringStore,
    ILeaseStore,
    IRevocationStore,
    ISeatQueue,
    IssuedKeycard,
    IStoreHealth,
    IThrottleStore,
    QueueLimits,
    Revocation,
    SeatWaiter,
    ThrottleEvent,
    ThrottleShare,
    queueLimitReached,
    queueRefusal,
    seatRefusal,
)
from twisted_keycard.store.sqlite._database import (
    COLUMNS,
    SECRETS,
    Database,
    Runner,
    fromRow,
    toRow,
)
from twisted_keycard.store.sqlite._journal import append, journalPath, replay
from twisted_keycard.tokens import Keyring, SigningKey


def appendThrottle(
    c: sqlite3.Connection, source: str, events: Sequence[ThrottleEvent]
) -> None:
    """
    Run inside a write transaction (see L{Database.write}).
    """
    c.executemany(
        "INSERT INTO throttle_log (source, key, at, kind) VALUES (?, ?, ?, ?)",
        [(source, e.key, e.at, e.kind) for e in events],
    )


def readThrottle(
    c: sqlite3.Connection, source: str, cursor: int, limit: int
) -> ThrottleShare:
    if limit <= 0:
        return ThrottleShare([], cursor)
    rows = c.execute(
        "SELECT seq, source, key, at, kind FROM throttle_log"
        " WHERE seq > ? ORDER BY seq LIMIT ?",
        (cursor, limit),
    ).fetchall()
    return ThrottleShare(
        [ThrottleEvent(k, at, kind) for _, s, k, at, kind in rows if s != source],
        rows[-1][0] if rows else max(cursor, 0),
        len(rows) == limit,
    )


def flushThrottle(c: sqlite3.Connection, before: float) -> int:
    """
    Forget the events at the head of the log up to the first one dated
    after C{before}: found in the order of the primary key, in time
    proportional to the number forgotten.  Run inside a write transaction.
    """
    row = c.execute(
        "SELECT seq FROM throttle_log WHERE at > ? ORDER BY seq LIMIT 1", (before,)
    ).fetchone()
    if row is None:
        return int(
            c.execute("DELETE FROM throttle_log WHERE at <= ?", (before,)).rowcount
        )
    return int(c.execute("DELETE FROM throttle_log WHERE seq < ?", (row[0],)).rowcount)


def renewLease(c: sqlite3.Connection, holderId: str, expires: float) -> bool:
    held = c.execute("SELECT 1 FROM leases WHERE holder_id = ?", (holderId,)).fetchone()
    c.execute(
        "INSERT OR REPLACE INTO leases (holder_id, expires) VALUES (?, ?)",
        (holderId, expires),
    )
    return held is not None


def releaseLapsed(c: sqlite3.Connection, when: float) -> int:
    lapsed = [
        row[0]
        for row in c.execute("SELECT holder_id FROM leases WHERE expires <= ?", (when,))
    ]
    released = 0
    for holderId in lapsed:
        released += c.execute(
            "UPDATE keycards SET held = 0, seat_pool = NULL"
            " WHERE holder_id = ? AND held = 1",
            (holderId,),
        ).rowcount
        c.execute("DELETE FROM leases WHERE holder_id = ?", (holderId,))
    return released


def holdUnder(
    c: sqlite3.Connection, keycardId: str, holderId: str
) -> IssuedKeycard | None:
    changed = c.execute(
        "UPDATE keycards SET holder_id = ? WHERE keycard_id = ? AND held = 1",
        (holderId, keycardId),
    ).rowcount
    if not changed:
        return None
    row = c.execute(
        f"SELECT {COLUMNS} FROM keycards WHERE keycard_id = ?",
        (keycardId,),
    ).fetchone()
    return fromRow(row)


def keyringSaved(c: sqlite3.Connection) -> None:
    """
    Change the keyring's version, in the transaction that saves it.
    """
    if not c.execute(
        "UPDATE versions SET version = version + 1 WHERE name = 'keyring'"
    ).rowcount:
        c.execute("INSERT INTO versions (name, version) VALUES ('keyring', 1)")


def keyringVersion(c: sqlite3.Connection) -> int:
    row = c.execute("SELECT version FROM versions WHERE name = 'keyring'").fetchone()
    return 0 if row is None else int(row[0])


_MARKS = ",".join("?" * len(COLUMNS.split(",")))


def addWithin(
    c: sqlite3.Connection,
    record: IssuedKeycard,
    maxPerAvatar: int | None,
    poolSize: int | None,
    seatsPerAvatar: int | None = None,
    ticketId: str | None = None,
) -> None:
    when = record.issued
    if maxPerAvatar is not None or poolSize is not None or seatsPerAvatar is not None:
        releaseLapsed(c, when)
    if maxPerAvatar is not None:
        (held,) = c.execute(
            "SELECT COUNT(*) FROM keycards"
            " WHERE avatar_id = ? AND held = 1 AND expires > ?",
            (record.avatarId, when),
        ).fetchone()
        if held >= maxPerAvatar:
            raise seatRefusal("", "avatar")
    pool = record.seatPool
    queued = False
    if poolSize is not None and pool is not None:
        head = c.execute(
            "SELECT ticket_id FROM seat_queue WHERE pool = ? AND lapses > ?"
            " ORDER BY seq LIMIT 1",
            (pool, when),
        ).fetchone()
        if head is not None and ticketId is not None:
            queued = placeOf(c, pool, ticketId, when) is not None
            if queued and head[0] != ticketId:
                raise seatRefusal(pool, "queued")
        taken = countSeats(c, pool, when)
        if taken >= poolSize or (head is not None and not queued):
            raise seatRefusal(pool, "pool")
    if seatsPerAvatar is not None and pool is not None:
        (mine,) = c.execute(
            "SELECT COUNT(*) FROM keycards"
            " WHERE seat_pool = ? AND avatar_id = ? AND held = 1 AND expires > ?",
            (pool, record.avatarId, when),
        ).fetchone()
        if mine >= seatsPerAvatar:
            raise seatRefusal(pool, "seats-per-avatar")
    try:
        c.execute(f"INSERT INTO keycards ({COLUMNS}) VALUES ({_MARKS})", toRow(record))
    except sqlite3.IntegrityError as e:
        if "keycards.keycard_id" in str(e):
            raise KeyError(record.keycardId) from None
        raise
    if queued:
        leaveQueue(c, pool or "", ticketId or "")


# Seat queues: a waiter whose place lapsed stays in the table, counting
# for nothing, until the next write on its pool deletes it.


def countSeats(c: sqlite3.Connection, pool: str, when: float) -> int:
    (taken,) = c.execute(
        "SELECT COUNT(*) FROM keycards"
        " WHERE seat_pool = ? AND held = 1 AND expires > ?",
        (pool, when),
    ).fetchone()
    return int(taken)


def seatsTaken(c: sqlite3.Connection, pool: str, when: float) -> int:
    """
    Run inside a write transaction: lapsed leases are released first.
    """
    releaseLapsed(c, when)
    return countSeats(c, pool, when)


def pruneQueue(c: sqlite3.Connection, pool: str, when: float) -> None:
    """
    Forget C{pool}'s lapsed waiters.  Run inside a write transaction.
    """
    c.execute("DELETE FROM seat_queue WHERE pool = ? AND lapses <= ?", (pool, when))


def placeOf(c: sqlite3.Connection, pool: str, ticketId: str, when: float) -> int | None:
    row = c.execute(
        "SELECT seq FROM seat_queue WHERE pool = ? AND ticket_id = ? AND lapses > ?",
        (pool, ticketId, when),
    ).fetchone()
    if row is None:
        return None
    (place,) = c.execute(
        "SELECT COUNT(*) FROM seat_queue WHERE pool = ? AND seq <= ? AND lapses > ?",
        (pool, row[0], when),
    ).fetchone()
    return int(place)


def waiters(c: sqlite3.Connection, pool: str, when: float) -> list[SeatWaiter]:
    rows = c.execute(
        "SELECT ticket_id, pool, avatar_id, address, lapses FROM seat_queue"
        " WHERE pool = ? AND lapses > ? ORDER BY seq",
        (pool, when),
    )
    return [SeatWaiter(*row) for row in rows]


def queueLength(c: sqlite3.Connection, pool: str, when: float) -> int:
    (waiting,) = c.execute(
        "SELECT COUNT(*) FROM seat_queue WHERE pool = ? AND lapses > ?",
        (pool, when),
    ).fetchone()
    return int(waiting)


def joinQueue(
    c: sqlite3.Connection, waiter: SeatWaiter, when: float, limits: QueueLimits
) -> tuple[int, int]:
    pool = waiter.pool
    pruneQueue(c, pool, when)
    if not c.execute(
        "UPDATE seat_queue SET lapses = ? WHERE pool = ? AND ticket_id = ?",
        (waiter.lapses, pool, waiter.ticketId),
    ).rowcount:
        refused = queueLimitReached(waiters(c, pool, when), waiter, limits)
        if refused is not None:
            raise queueRefusal(pool, refused)
        c.execute(
            "INSERT INTO seat_queue (pool, ticket_id, avatar_id, address, lapses)"
            " VALUES (?, ?, ?, ?, ?)",
            (pool, waiter.ticketId, waiter.avatarId, waiter.address, waiter.lapses),
        )
    place = placeOf(c, pool, waiter.ticketId, when)
    assert place is not None
    return place, queueLength(c, pool, when)


def renewPlace(
    c: sqlite3.Connection, pool: str, ticketId: str, lapses: float, when: float
) -> tuple[int, int] | None:
    pruneQueue(c, pool, when)
    c.execute(
        "UPDATE seat_queue SET lapses = ? WHERE pool = ? AND ticket_id = ?",
        (lapses, pool, ticketId),
    )
    place = placeOf(c, pool, ticketId, when)
    return None if place is None else (place, queueLength(c, pool, when))


def leaveQueue(c: sqlite3.Connection, pool: str, ticketId: str) -> bool:
    return bool(
        c.execute(
            "DELETE FROM seat_queue WHERE pool = ? AND ticket_id = ?", (pool, ticketId)
        ).rowcount
    )


def remove(c: sqlite3.Connection, keycardId: str) -> IssuedKeycard | None:
    row = c.execute(
        f"SELECT {COLUMNS} FROM keycards WHERE keycard_id = ?", (keycardId,)
    ).fetchone()
    if row is None:
        return None
    c.execute("DELETE FROM keycards WHERE keycard_id = ?", (keycardId,))
    return fromRow(row)


def expiredIds(c: sqlite3.Connection, when: float) -> list[str]:
    rows = c.execute("SELECT keycard_id FROM keycards WHERE expires <= ?", (when,))
    return [row[0] for row in rows]


def removeExpired(c: sqlite3.Connection, keycardIds: list[str], when: float) -> int:
    """
    Remove those of C{keycardIds} still expired at C{when} (not renewed
    meanwhile).  Run inside a write transaction.
    """
    removed = 0
    for keycardId in keycardIds:
        removed += c.execute(
            "DELETE FROM keycards WHERE keycard_id = ? AND expires <= ?",
            (keycardId, when),
        ).rowcount
    return removed


def release(c: sqlite3.Connection, keycardId: str) -> IssuedKeycard | None:
    c.execute(
        "UPDATE keycards SET held = 0, seat_pool = NULL WHERE keycard_id = ?",
        (keycardId,),
    )
    row = c.execute(
        f"SELECT {COLUMNS} FROM keycards WHERE keycard_id = ?", (keycardId,)
    ).fetchone()
    return None if row is None else fromRow(row)


def renew(
    c: sqlite3.Connection, keycardId: str, expires: float
) -> IssuedKeycard | None:
    c.execute(
        "UPDATE keycards SET expires = ? WHERE keycard_id = ?",
        (expires, keycardId),
    )
    row = c.execute(
        f"SELECT {COLUMNS} FROM keycards WHERE keycard_id = ?", (keycardId,)
    ).fetchone()
    return None if row is None else fromRow(row)


#: Revocation checks answered by one query, at most.
BATCH = 500


def revoke(c: sqlite3.Connection, revocations: Sequence[Revocation]) -> int:
    added = 0
    for r in revocations:
        known = c.execute(
            "SELECT expires FROM revocations WHERE keycard_id = ?",
            (r.keycardId,),
        ).fetchone()
        if known is None:
            added += 1
        elif known[0] >= r.expires:
            continue
        else:
            # Delete and insert, so followers see it again at a new seq.
            c.execute("DELETE FROM revocations WHERE keycard_id = ?", (r.keycardId,))
        c.execute(
            "INSERT INTO revocations (keycard_id, expires, revoked_at, reason)"
            " VALUES (?, ?, ?, ?)",
            (r.keycardId, r.expires, r.revokedAt, r.reason),
        )
    return added


def revokedSince(
    c: sqlite3.Connection, cursor: int, limit: int
) -> tuple[list[Revocation], int]:
    rows = c.execute(
        "SELECT seq, keycard_id, expires, revoked_at, reason FROM revocations"
        " WHERE seq > ? ORDER BY seq LIMIT ?",
        (cursor, limit),
    ).fetchall()
    if not rows:
        return [], cursor
    return [Revocation(*row[1:]) for row in rows], rows[-1][0]


def revocationChecks(db: Database) -> BatchedLookups:
    """
    Revocation checks that arrive together, answered by one query of at
    most L{BATCH} ids in the store's thread.
    """

    def query(ids: list[str]) -> Deferred[set[str]]:
        marks = ",".join("?" * len(ids))
        sql = f"SELECT keycard_id FROM revocations WHERE keycard_id IN ({marks})"
        return db.run(lambda c: {row[0] for row in c.execute(sql, ids)})

    return BatchedLookups(query, BATCH)


def loadKeyring(c: sqlite3.Connection) -> Keyring | None:
    rows = c.execute("SELECT kid, secret, created, not_after FROM keyring").fetchall()
    if not rows:
        return None
    return Keyring.fromKeys(SigningKey(k, bytes(s), cr, na) for k, s, cr, na in rows)


def saveKeyring(c: sqlite3.Connection, keyring: Keyring) -> None:
    c.execute("DELETE FROM keyring")
    c.executemany(
        "INSERT INTO keyring (kid, secret, created, not_after) VALUES (?, ?, ?, ?)",
        [(k.kid, k.secret, k.created, k.notAfter) for k in keyring.keys],
    )
    keyringSaved(c)


def mockSecret(c: sqlite3.Connection) -> bytes:
    c.execute(SECRETS)
    # In one transaction: of processes racing here, the first wins.
    c.execute(
        "INSERT OR IGNORE INTO secrets (name, secret) VALUES ('mock', ?)",
        (secrets.token_bytes(SECRET_BYTES),),
    )
    row = c.execute("SELECT secret FROM secrets WHERE name = 'mock'")
    return bytes(row.fetchone()[0])


_T = TypeVar("_T")


@implementer(
    IKeycardStore,
    IRevocationStore,
    IKeyringStore,
    IThrottleStore,
    ILeaseStore,
    IStoreHealth,
    ISeatQueue,
)
class SQLiteStore:
    """
    A store in an SQLite file.  Its work runs in a thread of its own,
    started by the first query, stopped by L{close} or when the reactor
    shuts down (a daemon thread: it never keeps the process alive).  The
    writes of one reactor turn, and those made while earlier ones commit,
    share one transaction and at most one disk flush; each is answered once
    it is committed.

    Every write survives a crash of the process once answered.  Seat
    grants, renewals, revocations, the keyring, the mock secret and the
    lease a keycard is held under are on disk then too
    (C{synchronous=FULL}); the rest (keycards issued with no quota,
    removals and releases, lease renewals, throttle events, flushes) waits
    for no disk flush (C{NORMAL}, in WAL mode): a power failure may undo
    the last of them, which only logs clients in again, keeps a seat taken
    a little longer, or forgets some failed logins.  The release or removal
    of a keycard waits up to C{LATER} (10 ms) for another write to share
    its transaction: its client is gone, nobody waits on it.
    """

    def __init__(
        self,
        path: str,
        reactor: Any = None,
        *,
        threaded: bool = True,
        runner: Runner | None = None,
    ) -> None:
        """
        @param path: the database file; made if missing.
        @param reactor: the reactor the results are delivered in.
        @param threaded: run database work in its own thread (the default);
            C{False} runs it in the caller's thread, for tests only.
        @param runner: for tests, runs each trip to the database's thread
            (see L{Database}).
        """
        self.path = path
        #: The revocation journal beside the file (see L{replay}).
        self.journal = journalPath(path)
        self._db = Database(
            path, reactor, threaded=threaded, runner=runner, onConnect=self._replay
        )
        self._run = self._db.run
        # Durable writes (synchronous=FULL: on disk when answered) for what
        # a power failure must not undo; light ones (NORMAL: in the WAL,
        # which a process crash does not lose, but a power failure may) for
        # what it may: see the table in docs/stores.rst.
        self._write = self._db.write
        self._checks = revocationChecks(self._db)

    def _light(
        self, job: Callable[[sqlite3.Connection], _T], prompt: bool = True
    ) -> Deferred[_T]:
        return self._db.write(job, durable=False, prompt=prompt)

    @classmethod
    def open(cls, path: str, reactor: Any = None) -> Deferred[SQLiteStore]:
        """
        Open (and if need be create) the store, and check its schema.
        """
        store = cls(path, reactor)
        return store._run(lambda c: None).addCallback(lambda _: store)

    def close(self) -> Deferred[None]:
        """
        Close the database and stop its thread.
        """
        return self._db.close()

    def storeUp(self) -> bool:
        """
        See L{IStoreHealth.storeUp}: whether the last transaction of the
        writer committed (a locked, full or unwritable database fails it).
        """
        return self._db.writing

    def writesQueued(self) -> int:
        """
        See L{IStoreHealth.writesQueued}: the writes waiting for their
        group's transaction, or in one not yet committed.
        """
        return self._db.queued

    # Issued keycards

    def add(self, record: IssuedKeycard) -> Deferred[None]:
        return self.addWithin(record, None, None)

    def addWithin(
        self,
        record: IssuedKeycard,
        maxPerAvatar: int | None,
        poolSize: int | None,
        seatsPerAvatar: int | None = None,
        ticketId: str | None = None,
    ) -> Deferred[None]:
        def job(c: sqlite3.Connection) -> None:
            addWithin(c, record, maxPerAvatar, poolSize, seatsPerAvatar, ticketId)

        if (
            maxPerAvatar is None
            and poolSize is None
            and seatsPerAvatar is None
            and record.seatPool is None
        ):
            # A keycard lost to a power failure only means that its client
            # logs in again.
            return self._light(job)
        # A seat grant lost to a power failure would grant the seat twice.
        return self._write(job)

    def _select(
        self, where: str, args: tuple[object, ...]
    ) -> Deferred[list[IssuedKeycard]]:
        sql = f"SELECT {COLUMNS} FROM keycards WHERE {where} ORDER BY keycard_id"
        return self._run(lambda c: [fromRow(r) for r in c.execute(sql, args)])

    def get(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        d = self._select("keycard_id = ?", (keycardId,))
        return d.addCallback(lambda rows: rows[0] if rows else None)

    def remove(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        # Lost, the record comes back as it was: its seat stays taken
        # until it expires or its lease lapses (fewer seats, never more).
        # Its client is gone: it may wait a moment for the next write.
        return self._light(lambda c: remove(c, keycardId), prompt=False)

    def release(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        return self._light(lambda c: release(c, keycardId), prompt=False)

    def renew(self, keycardId: str, expires: float) -> Deferred[IssuedKeycard | None]:
        # Lost, an earlier expiry could free a seat its client still holds.
        return self._write(lambda c: renew(c, keycardId, expires))

    def byAvatar(self, avatarId: str) -> Deferred[list[IssuedKeycard]]:
        return self._select("avatar_id = ?", (avatarId,))

    def byRequester(self, requesterName: str) -> Deferred[list[IssuedKeycard]]:
        return self._select("requester_name = ?", (requesterName,))

    def byParent(self, parentId: str) -> Deferred[list[IssuedKeycard]]:
        return self._select("parent_id = ?", (parentId,))

    def byFamily(self, familyId: str) -> Deferred[list[IssuedKeycard]]:
        return self._select("family_id = ?", (familyId,))

    def expiredBefore(self, when: float) -> Deferred[list[IssuedKeycard]]:
        return self._select("expires <= ?", (when,))

    def flushExpired(self, when: float) -> Deferred[int]:
        return Deferred.fromCoroutine(self._flushExpired(when))

    async def _flushExpired(self, when: float) -> int:
        # The table is read without an index on expiry, and without the
        # write lock (WAL: other processes keep writing meanwhile); then
        # what expired is removed by id.
        expired = await self._run(lambda c: expiredIds(c, when))
        if not expired:
            return 0
        # Lost, the flush is done again.
        return await self._light(lambda c: removeExpired(c, expired, when))

    def count(self) -> Deferred[int]:
        return self._run(
            lambda c: c.execute("SELECT COUNT(*) FROM keycards").fetchone()[0]
        )

    # Revocations

    def revoke(self, revocations: Sequence[Revocation]) -> Deferred[int]:
        """
        Record revocations: in the journal first (on disk), then in the
        database, in the same durable write.
        """
        journal = self.journal

        def job(c: sqlite3.Connection) -> int:
            if journal is not None:
                append(journal, revocations)
            return revoke(c, revocations)

        return self._write(job)

    def _replay(self, connection: sqlite3.Connection) -> None:
        """
        Bring the journal's revocations into a database just opened: a
        database restored from an older backup gets back the revocations
        made since.
        """
        if self.journal is not None:
            replay(connection, self.journal, self._db.seconds(), revoke)

    def isRevoked(self, keycardId: str) -> Deferred[bool]:
        return self._checks.lookUp(keycardId)

    def revocationsOf(self, keycardIds: Sequence[str]) -> Deferred[list[Revocation]]:
        ids = list(keycardIds)
        marks = ",".join("?" * len(ids))
        sql = (
            "SELECT keycard_id, expires, revoked_at, reason FROM revocations"
            f" WHERE keycard_id IN ({marks})"
        )
        return self._run(lambda c: [Revocation(*row) for row in c.execute(sql, ids)])

    def revokedSince(
        self, cursor: int, limit: int
    ) -> Deferred[tuple[list[Revocation], int]]:
        return self._run(lambda c: revokedSince(c, cursor, limit))

    def flushRevocations(self, when: float) -> Deferred[int]:
        # Lost, the flush is done again.
        return self._light(
            lambda c: (
                c.execute(
                    "DELETE FROM revocations WHERE expires <= ?", (when,)
                ).rowcount
            )
        )

    # Failed logins

    def shareThrottle(
        self, source: str, events: Sequence[ThrottleEvent], cursor: int, limit: int
    ) -> Deferred[ThrottleShare]:
        events = list(events)
        if not events:
            # Nothing to write: read without the write lock.
            return self._run(lambda c: readThrottle(c, source, cursor, limit))

        def share(c: sqlite3.Connection) -> ThrottleShare:
            appendThrottle(c, source, events)
            return readThrottle(c, source, cursor, limit)

        # A power failure may forget the last ones: some failures.
        return self._light(share)

    def flushFailures(self, before: float) -> Deferred[int]:
        return self._light(lambda c: flushThrottle(c, before))

    # Keyring

    def loadKeyring(self) -> Deferred[Keyring | None]:
        return self._run(loadKeyring)

    def saveKeyring(self, keyring: Keyring) -> Deferred[None]:
        return self._write(lambda c: saveKeyring(c, keyring))

    def keyringVersion(self) -> Deferred[int]:
        return self._run(keyringVersion)

    # Leases

    def renewLease(self, holderId: str, when: float, expires: float) -> Deferred[bool]:
        # Lost, the lease looks older: a power failure stopped every bouncer
        # of this host, whose leases lapse anyway.
        return self._light(lambda c: renewLease(c, holderId, expires))

    def releaseLapsed(self, when: float) -> Deferred[int]:
        # Lost, the keycards stay held until the next release.
        return self._light(lambda c: releaseLapsed(c, when))

    def holdUnder(
        self, keycardId: str, holderId: str
    ) -> Deferred[IssuedKeycard | None]:
        return self._write(lambda c: holdUnder(c, keycardId, holderId))

    def mockSecret(self) -> Deferred[bytes]:
        return self._write(mockSecret)

    # Seat queues

    def joinQueue(
        self, waiter: SeatWaiter, when: float, limits: QueueLimits
    ) -> Deferred[tuple[int, int]]:
        # Lost to a power failure, the place is taken again at the tail
        # when the client comes back.
        return self._light(lambda c: joinQueue(c, waiter, when, limits))

    def renewPlace(
        self, pool: str, ticketId: str, lapses: float, when: float
    ) -> Deferred[tuple[int, int] | None]:
        return self._light(lambda c: renewPlace(c, pool, ticketId, lapses, when))

    def queuePlace(self, pool: str, ticketId: str, when: float) -> Deferred[int | None]:
        return self._run(lambda c: placeOf(c, pool, ticketId, when))

    def leaveQueue(self, pool: str, ticketId: str) -> Deferred[bool]:
        return self._light(lambda c: leaveQueue(c, pool, ticketId))

    def seatsTaken(self, pool: str, when: float) -> Deferred[int]:
        # Lost, the release is done again.
        return self._light(lambda c: seatsTaken(c, pool, when))

    def waiters(self, pool: str, when: float) -> Deferred[list[SeatWaiter]]:
        return self._run(lambda c: waiters(c, pool, when))
