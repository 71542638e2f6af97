"""
The SQLite store: issued keycards, revocations and the keyring in one file,
the embedded default.  Several bouncer processes may share the file.

Database work runs in the L{Database}'s own thread; writes made together
are committed in one transaction (each on disk before it is answered), and
revocation checks that arrive together are answered by one query.  The SQL
of each interface is in a module of its own (C{_keycards}, C{_revocations},
C{_failures}, C{_secrets}, C{_leases}).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from zope.interface import implementer

from twisted_keycard.store._interfaces import (
    IKeycardStore,
    IKeyringStore,
    ILeaseStore,
    IRevocationStore,
    IThrottleStore,
)
from twisted_keycard.store._records import IssuedKeycard, Revocation
from twisted_keycard.store.sqlite import _failures as failures
from twisted_keycard.store.sqlite import _keycards, _revocations, _secrets
from twisted_keycard.store.sqlite import _leases as leases
from twisted_keycard.store.sqlite._database import Database
from twisted_keycard.store.sqlite._revocations import revocationChecks
from twisted_keycard.store.sqlite._schema import COLUMNS, fromRow
from twisted_keycard.tokens._keyring import Keyring

_T = TypeVar("_T")


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
        self._checks = revocationChecks(self._db)

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
        return self._write(
            lambda c: _keycards.addWithin(c, record, maxPerAvatar, poolSize)
        )

    def _select(
        self, where: str, args: tuple[object, ...]
    ) -> Deferred[list[IssuedKeycard]]:
        sql = f"SELECT {COLUMNS} FROM keycards WHERE {where} ORDER BY keycard_id"
        return self._run(lambda c: [fromRow(r) for r in c.execute(sql, args)])

    def get(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        d = self._select("keycard_id = ?", (keycardId,))
        return d.addCallback(lambda rows: rows[0] if rows else None)

    def remove(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        return self._write(lambda c: _keycards.remove(c, keycardId))

    def release(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        return self._write(lambda c: _keycards.release(c, keycardId))

    def renew(self, keycardId: str, expires: float) -> Deferred[IssuedKeycard | None]:
        return self._write(lambda c: _keycards.renew(c, keycardId, expires))

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
        return self._write(lambda c: _revocations.revoke(c, revocations))

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
        return self._run(lambda c: _revocations.revokedSince(c, cursor, limit))

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
        return self._run(_secrets.loadKeyring)

    def saveKeyring(self, keyring: Keyring) -> Deferred[None]:
        return self._write(lambda c: _secrets.saveKeyring(c, keyring))

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
        return self._write(_secrets.mockSecret)
