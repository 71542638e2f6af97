"""
The SQLite store: issued keycards, revocations and the keyring in one file,
the embedded default.
"""

from twisted_keycard.store.sqlite._database import connect
from twisted_keycard.store.sqlite._store import SQLiteStore

__all__ = ["SQLiteStore", "connect"]
