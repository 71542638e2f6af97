"""
The SQLite store's failed logins and reservations, as jobs run in its
database thread; reservations are taken in one immediate transaction, so
bouncer processes sharing the file never take more than the limits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence


def recordFailure(c: sqlite3.Connection, keys: Sequence[str], when: float) -> None:
    c.executemany(
        "INSERT INTO failures (key, at) VALUES (?, ?)", [(k, when) for k in keys]
    )


def failuresSince(
    c: sqlite3.Connection, keys: Sequence[str], since: float
) -> dict[str, int]:
    return {
        k: c.execute(
            "SELECT COUNT(*) FROM failures WHERE key = ? AND at > ?", (k, since)
        ).fetchone()[0]
        for k in keys
    }


def reserve(
    c: sqlite3.Connection,
    reservationId: str,
    limits: Mapping[str, int],
    since: float,
    when: float,
) -> bool:
    """
    Run inside a write transaction (see L{Database.write}).
    """
    for key, limit in limits.items():
        (failures,) = c.execute(
            "SELECT COUNT(*) FROM failures WHERE key = ? AND at > ?", (key, since)
        ).fetchone()
        (reserved,) = c.execute(
            "SELECT COUNT(*) FROM reservations WHERE key = ? AND at > ?", (key, since)
        ).fetchone()
        if failures + reserved >= limit:
            return False
    c.executemany(
        "INSERT INTO reservations (id, key, at) VALUES (?, ?, ?)",
        [(reservationId, key, when) for key in limits],
    )
    return True


def settle(c: sqlite3.Connection, reservationId: str, failed: bool) -> None:
    """
    Run inside a write transaction (see L{Database.write}).
    """
    if failed:
        c.execute(
            "INSERT INTO failures (key, at) SELECT key, at FROM reservations"
            " WHERE id = ?",
            (reservationId,),
        )
    c.execute("DELETE FROM reservations WHERE id = ?", (reservationId,))


def flushFailures(c: sqlite3.Connection, before: float) -> int:
    """
    Run inside a write transaction (see L{Database.write}).
    """
    failures = c.execute("DELETE FROM failures WHERE at <= ?", (before,)).rowcount
    reserved = c.execute("DELETE FROM reservations WHERE at <= ?", (before,)).rowcount
    return int(failures + reserved)
