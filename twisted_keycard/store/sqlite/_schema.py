"""
The SQLite schema of the store, and the connection settings that make it
durable and shareable between processes.
"""

from __future__ import annotations

import sqlite3

from twisted_keycard._secretfiles import createPrivateFile
from twisted_keycard.store._records import IssuedKeycard

VERSION = 1

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
    held INTEGER NOT NULL DEFAULT 1
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
CREATE TABLE IF NOT EXISTS keyring (
    kid TEXT PRIMARY KEY,
    secret BLOB NOT NULL,
    created REAL NOT NULL,
    not_after REAL
);
"""

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
    " address, issued, duration, expires, parent_id, seat_pool, held"
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
        # Every statement is idempotent: processes racing here agree.
        connection.executescript(SCHEMA)
        connection.execute(f"PRAGMA user_version = {VERSION}")
    return connection


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
    )


def fromRow(row: tuple[object, ...]) -> IssuedKeycard:
    *fields, held = row
    return IssuedKeycard(*fields, held=bool(held))  # type: ignore[arg-type, misc]
