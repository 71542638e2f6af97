"""
The SQLite store's leases and keyring version, as jobs run inside its write
transactions (see L{Database.write}), so that processes sharing the file
agree on which keycards a lapsed lease held.
"""

from __future__ import annotations

import sqlite3

from twisted_keycard.store._records import IssuedKeycard
from twisted_keycard.store.sqlite._schema import COLUMNS, fromRow


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
        f"SELECT {COLUMNS} FROM keycards WHERE keycard_id = ?",  # noqa: S608
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
