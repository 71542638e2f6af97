"""
The SQLite store: issued keycards, revocations and the keyring in one file,
the embedded default.  Several bouncer processes may share the file.

Database work runs in the L{Database}'s own thread; writes made together
are committed in one transaction (each on disk before it is answered), and
revocation checks that arrive together are answered by one query.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from zope.interface import implementer

from twisted_keycard._mocks import SECRET_BYTES
from twisted_keycard.error import QuotaExceeded
from twisted_keycard.store._interfaces import (
    IKeycardStore,
    IKeyringStore,
    ILeaseStore,
    IRevocationStore,
    IThrottleStore,
)
from twisted_keycard.store._records import IssuedKeycard, Revocation
from twisted_keycard.store.sqlite import _failures as failures
from twisted_keycard.store.sqlite import _leases as leases
from twisted_keycard.store.sqlite._database import Database
from twisted_keycard.store.sqlite._schema import COLUMNS, SECRETS, fromRow, toRow
from twisted_keycard.tokens._keyring import Keyring, SigningKey

_T = TypeVar("_T")

#: Revocation checks answered by one query, at most.
BATCH = 500

_MARKS = ",".join("?" * len(COLUMNS.split(",")))


@implementer(
    IKeycardStore, IRevocationStore, IKeyringStore, IThrottleStore, ILeaseStore
)
class SQLiteStore:
    """
    A store in an SQLite file.  Its work runs in a thread of its own,
    started by the first query, stopped by L{close} or when the reactor
    shuts down (a daemon thread: it never keeps the process alive).  The
    writes of one reactor turn, and those made while earlier ones commit,
    share one transaction and one disk flush; each is answered once it is
    on disk.
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
        self.path = path
        self._db = Database(path, reactor, threaded=threaded)
        self._run = self._db.run
        self._write = self._db.write
        self._waiting: dict[str, list[Deferred[bool]]] = {}
        self._checking = False

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

    # Issued keycards

    def add(self, record: IssuedKeycard) -> Deferred[None]:
        return self.addWithin(record, None, None)

    def addWithin(
        self, record: IssuedKeycard, maxPerAvatar: int | None, poolSize: int | None
    ) -> Deferred[None]:
        def job(c: sqlite3.Connection) -> None:
            if c.execute(
                "SELECT 1 FROM keycards WHERE keycard_id = ?", (record.keycardId,)
            ).fetchone():
                raise KeyError(record.keycardId)
            if maxPerAvatar is not None or poolSize is not None:
                leases.releaseLapsed(c, record.issued)
            if maxPerAvatar is not None:
                (held,) = c.execute(
                    "SELECT COUNT(*) FROM keycards"
                    " WHERE avatar_id = ? AND held = 1 AND expires > ?",
                    (record.avatarId, record.issued),
                ).fetchone()
                if held >= maxPerAvatar:
                    raise QuotaExceeded("too many keycards for this avatar")
            if poolSize is not None and record.seatPool is not None:
                (taken,) = c.execute(
                    "SELECT COUNT(*) FROM keycards"
                    " WHERE seat_pool = ? AND held = 1 AND expires > ?",
                    (record.seatPool, record.issued),
                ).fetchone()
                if taken >= poolSize:
                    raise QuotaExceeded(f"no seat left in pool {record.seatPool!r}")
            c.execute(
                f"INSERT INTO keycards ({COLUMNS}) VALUES ({_MARKS})",
                toRow(record),
            )

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
        def job(c: sqlite3.Connection) -> IssuedKeycard | None:
            row = c.execute(
                f"SELECT {COLUMNS} FROM keycards WHERE keycard_id = ?", (keycardId,)
            ).fetchone()
            if row is None:
                return None
            c.execute("DELETE FROM keycards WHERE keycard_id = ?", (keycardId,))
            return fromRow(row)

        return self._write(job)

    def release(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        def job(c: sqlite3.Connection) -> IssuedKeycard | None:
            c.execute(
                "UPDATE keycards SET held = 0, seat_pool = NULL WHERE keycard_id = ?",
                (keycardId,),
            )
            row = c.execute(
                f"SELECT {COLUMNS} FROM keycards WHERE keycard_id = ?", (keycardId,)
            ).fetchone()
            return None if row is None else fromRow(row)

        return self._write(job)

    def renew(self, keycardId: str, expires: float) -> Deferred[IssuedKeycard | None]:
        def job(c: sqlite3.Connection) -> IssuedKeycard | None:
            c.execute(
                "UPDATE keycards SET expires = ? WHERE keycard_id = ?",
                (expires, keycardId),
            )
            row = c.execute(
                f"SELECT {COLUMNS} FROM keycards WHERE keycard_id = ?", (keycardId,)
            ).fetchone()
            return None if row is None else fromRow(row)

        return self._write(job)

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
        return self._write(
            lambda c: (
                c.execute("DELETE FROM keycards WHERE expires <= ?", (when,)).rowcount
            )
        )

    def count(self) -> Deferred[int]:
        return self._run(
            lambda c: c.execute("SELECT COUNT(*) FROM keycards").fetchone()[0]
        )

    # Revocations

    def revoke(self, revocations: Sequence[Revocation]) -> Deferred[int]:
        def job(c: sqlite3.Connection) -> int:
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
                    c.execute(
                        "DELETE FROM revocations WHERE keycard_id = ?", (r.keycardId,)
                    )
                c.execute(
                    "INSERT INTO revocations (keycard_id, expires, revoked_at, reason)"
                    " VALUES (?, ?, ?, ?)",
                    (r.keycardId, r.expires, r.revokedAt, r.reason),
                )
            return added

        return self._write(job)

    def isRevoked(self, keycardId: str) -> Deferred[bool]:
        """
        Checks that arrive while a query runs wait for the next one, which
        answers them all.
        """
        d: Deferred[bool] = Deferred()
        self._waiting.setdefault(keycardId, []).append(d)
        if not self._checking:
            self._checkWaiting()
        return d

    def _checkWaiting(self) -> None:
        ids = list(self._waiting)[:BATCH]
        waiters = {k: self._waiting.pop(k) for k in ids}
        self._checking = True
        marks = ",".join("?" * len(ids))
        sql = f"SELECT keycard_id FROM revocations WHERE keycard_id IN ({marks})"

        def answer(found: set[str] | Any) -> None:
            self._checking = False
            for keycardId, ds in waiters.items():
                for d in ds:
                    if isinstance(found, set):
                        d.callback(keycardId in found)
                    else:
                        d.errback(found)
            if self._waiting:
                self._checkWaiting()

        d = self._run(lambda c: {row[0] for row in c.execute(sql, ids)})
        d.addBoth(answer)

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
        def job(c: sqlite3.Connection) -> tuple[list[Revocation], int]:
            rows = c.execute(
                "SELECT seq, keycard_id, expires, revoked_at, reason FROM revocations"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (cursor, limit),
            ).fetchall()
            if not rows:
                return [], cursor
            return [Revocation(*row[1:]) for row in rows], rows[-1][0]

        return self._run(job)

    def flushRevocations(self, when: float) -> Deferred[int]:
        return self._write(
            lambda c: (
                c.execute(
                    "DELETE FROM revocations WHERE expires <= ?", (when,)
                ).rowcount
            )
        )

    # Failed logins

    def _throttleWrite(self, job: Callable[[sqlite3.Connection], _T]) -> Deferred[_T]:
        # Counts of failed logins need no disk flush at each commit: losing
        # the last ones in a power failure only forgets some failures.
        return self._db.write(job, durable=False)

    def recordFailure(self, keys: Sequence[str], when: float) -> Deferred[None]:
        return self._throttleWrite(lambda c: failures.recordFailure(c, keys, when))

    def failuresSince(
        self, keys: Sequence[str], since: float
    ) -> Deferred[dict[str, int]]:
        return self._run(lambda c: failures.failuresSince(c, keys, since))

    def reserve(
        self, reservationId: str, limits: Mapping[str, int], since: float, when: float
    ) -> Deferred[bool]:
        return self._throttleWrite(
            lambda c: failures.reserve(c, reservationId, limits, since, when)
        )

    def settle(self, reservationId: str, failed: bool) -> Deferred[None]:
        return self._throttleWrite(lambda c: failures.settle(c, reservationId, failed))

    def flushFailures(self, before: float) -> Deferred[int]:
        return self._throttleWrite(lambda c: failures.flushFailures(c, before))

    # Keyring

    def loadKeyring(self) -> Deferred[Keyring | None]:
        def job(c: sqlite3.Connection) -> Keyring | None:
            rows = c.execute(
                "SELECT kid, secret, created, not_after FROM keyring"
            ).fetchall()
            if not rows:
                return None
            return Keyring.fromKeys(
                SigningKey(k, bytes(s), cr, na) for k, s, cr, na in rows
            )

        return self._run(job)

    def saveKeyring(self, keyring: Keyring) -> Deferred[None]:
        def job(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM keyring")
            c.executemany(
                "INSERT INTO keyring (kid, secret, created, not_after)"
                " VALUES (?, ?, ?, ?)",
                [(k.kid, k.secret, k.created, k.notAfter) for k in keyring.keys],
            )
            leases.keyringSaved(c)

        return self._write(job)

    def keyringVersion(self) -> Deferred[int]:
        return self._run(leases.keyringVersion)

    # Leases

    def renewLease(self, holderId: str, when: float, expires: float) -> Deferred[bool]:
        return self._write(lambda c: leases.renewLease(c, holderId, expires))

    def releaseLapsed(self, when: float) -> Deferred[int]:
        return self._write(lambda c: leases.releaseLapsed(c, when))

    def holdUnder(
        self, keycardId: str, holderId: str
    ) -> Deferred[IssuedKeycard | None]:
        return self._write(lambda c: leases.holdUnder(c, keycardId, holderId))

    def mockSecret(self) -> Deferred[bytes]:
        def job(c: sqlite3.Connection) -> bytes:
            c.execute(SECRETS)
            # In one transaction: of processes racing here, the first wins.
            c.execute(
                "INSERT OR IGNORE INTO secrets (name, secret) VALUES ('mock', ?)",
                (secrets.token_bytes(SECRET_BYTES),),
            )
            row = c.execute("SELECT secret FROM secrets WHERE name = 'mock'")
            return bytes(row.fetchone()[0])

        return self._write(job)
