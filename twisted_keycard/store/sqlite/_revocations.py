"""
The SQLite store's revocations: recording them and reading them in order
of writing, as jobs run inside its transactions (see L{Database}), and
checks that arrive together answered by one query.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from twisted.internet.defer import Deferred

from twisted_keycard.store._batched import BatchedLookups
from twisted_keycard.store._records import Revocation
from twisted_keycard.store.sqlite._database import Database

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
