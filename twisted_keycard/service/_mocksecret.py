"""
The mock secret, from the store to the checkers: read when the service is
made, so that no login is answered before the checkers have it.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.python.failure import Failure

from twisted_keycard._mocks import IMockSecretTaker
from twisted_keycard.store.sqlite._store import SQLiteStore


def storedMockSecret(path: str) -> bytes:
    """
    The mock secret of the SQLite store at C{path}, made and stored there
    if it has none.  Blocking: for startup, before the reactor runs.

    @raise sqlite3.Error: if the store cannot be read or written.
    @raise ValueError: if it has a format this version cannot read.
    """
    store = SQLiteStore(path, threaded=False)
    outcome: list[bytes | Failure] = []
    store.mockSecret().addBoth(outcome.append)
    store.close()
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    assert isinstance(result, bytes)
    return result


def giveMockSecret(checkers: Iterable[object], secret: bytes) -> None:
    """
    Hand C{secret} to every checker that makes mock challenges from one.
    """
    for checker in checkers:
        if IMockSecretTaker.providedBy(checker):
            IMockSecretTaker(checker).setMockSecret(secret)
