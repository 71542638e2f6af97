"""
The SQLite store's issued keycards, as jobs run inside its write
transactions (see L{Database.write}): adding one within the quotas on
avatars and seat pools, and removing, releasing and renewing one.
"""

from __future__ import annotations

import sqlite3

from twisted_keycard.error import QuotaExceeded
from twisted_keycard.store._records import IssuedKeycard
from twisted_keycard.store.sqlite import _leases as leases
from twisted_keycard.store.sqlite._schema import COLUMNS, fromRow, toRow

_MARKS = ",".join("?" * len(COLUMNS.split(",")))


def addWithin(
    c: sqlite3.Connection,
    record: IssuedKeycard,
    maxPerAvatar: int | None,
    poolSize: int | None,
) -> None:
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


def remove(c: sqlite3.Connection, keycardId: str) -> IssuedKeycard | None:
    row = c.execute(
        f"SELECT {COLUMNS} FROM keycards WHERE keycard_id = ?", (keycardId,)
    ).fetchone()
    if row is None:
        return None
    c.execute("DELETE FROM keycards WHERE keycard_id = ?", (keycardId,))
    return fromRow(row)


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
