"""
The SQLite schema of the store, and the connection settings that make it
durable and shareable between processes.
"""

from __future__ import annotations

import sqlite3

from twisted_keycard._secretfiles import createPrivateFile
from twisted_keycard.store._records import IssuedKeycard

#: 2 added C{keycards.family_id}; 3 the throttle's C{reservations}; 4 the
#: bouncers' leases (C{keycards.holder_id}, C{leases}) and C{versions} (of the
#: keyring).
VERSION = 4

SCHEMA = """
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
CREATE INDEX IF NOT EXISTS keycards_avatar ON keycards (avatar_id);
CREATE INDEX IF NOT EXISTS keycards_requester ON keycards (requester_name);
CREATE INDEX IF NOT EXISTS keycards_parent ON keycards (parent_id);
CREATE INDEX IF NOT EXISTS keycards_pool ON keycards (seat_pool);
CREATE INDEX IF NOT EXISTS keycards_expires ON keycards (expires);
CREATE TABLE IF NOT EXISTS revocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    keycard_id TEXT NOT NULL UNIQUE,
    expires REAL NOT NULL,
    revoked_at REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS revocations_expires ON revocations (expires);
CREATE TABLE IF NOT EXISTS failures (
    key TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS failures_key ON failures (key, at);
CREATE INDEX IF NOT EXISTS failures_at ON failures (at);
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT NOT NULL,
    key TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS reservations_id ON reservations (id);
CREATE INDEX IF NOT EXISTS reservations_key ON reservations (key, at);
CREATE INDEX IF NOT EXISTS reservations_at ON reservations (at);
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
    "CREATE INDEX IF NOT EXISTS keycards_family ON keycards (family_id)",
    "CREATE INDEX IF NOT EXISTS keycards_holder ON keycards (holder_id)",
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

COLUMNS = (
    "keycard_id, avatar_id, requester_name, bouncer_name, keycard_type,"
    " address, issued, duration, expires, parent_id, seat_pool, held, family_id,"
    " holder_id"
)


def connect(path: str) -> sqlite3.Connection:
    """
    Open the database: autocommit (transactions are explicit), WAL so that
    readers never wait for a writer, synchronous=FULL so a commit is on
    disk before it returns, and a busy timeout for other processes' locks.
    A new file is made with mode 0600 before SQLite opens it, whatever the
    umask: it holds the token signing keys.  SQLite gives its C{-wal} and
    C{-shm} files the database file's mode.

    @raise ValueError: if the file holds a newer schema than this version.
    """
    if path != ":memory:":
        createPrivateFile(path)
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA busy_timeout = 10000")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    if version > VERSION:
        connection.close()
        raise ValueError(
            f"{path} has store format {version}; this version reads {VERSION}"
        )
    if version < VERSION:
        # Every step is idempotent: processes racing here agree.
        connection.executescript(SCHEMA)
        # Format 1 to 2: keycards gain their family id (NULL for those
        # issued before, whose kc1 tokens are refused anyway); 3 to 4: the
        # lease they are held under (NULL: held under none).
        _addColumn(connection, "family_id")
        _addColumn(connection, "holder_id")
        for index in INDEXES:
            connection.execute(index)
        connection.execute(f"PRAGMA user_version = {VERSION}")
    return connection


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
