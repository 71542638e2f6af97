"""
The revocation journal of an SQLite store: every revocation appended to a
file beside the database (C{keycard.revocations} beside C{keycard.db}),
on disk before the database has it, and replayed into the database each
time it is opened.  A database restored from a backup older than some
revocations gets them back at its next start, with no key rotation and no
global logout; the journal is kept out of the restore (see
docs/production.rst, "Restoring from a backup").

Several processes use one store (the bouncer, the C{keycard} command): an
append takes an exclusive lock on the file and writes whole lines in one
call; the compaction made at each replay (the revocations past their
expiry dropped) takes the same lock and replaces the file, and an append
that finds its file replaced opens the new one.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from twisted_keycard._files import PRIVATE_FILE, writePrivateFile
from twisted_keycard.store import Revocation

#: Bytes one line of the journal may take, at most: a revocation is far
#: smaller; a longer line is not one (the file was damaged) and is skipped.
MAX_LINE = 4096


def journalPath(database: str) -> Path | None:
    """
    The journal of the database at C{database}: the same name with the
    suffix C{.revocations}; C{None} for an in-memory database.
    """
    if database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).with_suffix(".revocations")


@contextmanager
def _locked(path: Path) -> Iterator[int]:
    """
    The journal's file, open for appending and locked; made 0600 if
    missing.  If it was replaced while we waited for the lock, the new one.
    """
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            opened = os.fstat(fd)
            if current is not None and (current.st_ino, current.st_dev) == (
                opened.st_ino,
                opened.st_dev,
            ):
                yield fd
                return
        finally:
            os.close(fd)


def _line(revocation: Revocation) -> bytes:
    return (
        json.dumps(
            [
                revocation.keycardId,
                revocation.expires,
                revocation.revokedAt,
                revocation.reason,
            ],
            ensure_ascii=True,
        ).encode("ascii")
        + b"\n"
    )


def append(path: Path, revocations: Sequence[Revocation]) -> None:
    """
    Append C{revocations} to the journal, on disk (C{fsync}) when this
    returns.  Blocking: call it in the store's thread.
    """
    if not revocations:
        return
    data = b"".join(_line(r) for r in revocations)
    with _locked(path) as fd:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)


def _parse(line: bytes) -> Revocation | None:
    """
    The revocation of one line, or C{None} for a line that is not one (a
    line cut short by a crash, or damage).
    """
    if len(line) > MAX_LINE:
        return None
    try:
        keycardId, expires, revokedAt, reason = json.loads(line)
        revocation = Revocation(str(keycardId), float(expires), float(revokedAt))
        return Revocation(
            revocation.keycardId, revocation.expires, revocation.revokedAt, str(reason)
        )
    except (ValueError, TypeError):
        return None


#: Records revocations in a database, as the store does; returns how many
#: it lacked.
Apply = Callable[[sqlite3.Connection, Sequence[Revocation]], int]


def replay(connection: sqlite3.Connection, path: Path, now: float, apply: Apply) -> int:
    """
    Bring the journal's revocations in force into the database (those it
    lacks, or holds with an earlier expiry), in one transaction, then
    compact the journal to them.  Blocking: call it in the store's thread.

    @param now: revocations that expired before it are dropped.
    @param apply: records revocations in the database, as the store does.
    @return: how many revocations the database was missing.
    """
    if not path.exists():
        return 0
    with _locked(path):
        kept: dict[str, Revocation] = {}
        with path.open("rb") as journal:
            for line in journal:
                revocation = _parse(line.rstrip(b"\n"))
                if revocation is None or revocation.expires < now:
                    continue
                known = kept.get(revocation.keycardId)
                if known is None or known.expires < revocation.expires:
                    kept[revocation.keycardId] = revocation
        missing = _inTransaction(connection, apply, list(kept.values()))
        writePrivateFile(path, b"".join(_line(r) for r in kept.values()))
    return missing


def _inTransaction(
    connection: sqlite3.Connection, apply: Apply, revocations: list[Revocation]
) -> int:
    connection.execute("BEGIN IMMEDIATE")
    try:
        missing = apply(connection, revocations)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return missing
