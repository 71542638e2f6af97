"""
The SQLite store: issued keycards, revocations and the keyring in one file,
the embedded default, and its revocations also in a journal beside it.
"""

from twisted_keycard.store.sqlite._database import connect
from twisted_keycard.store.sqlite._journal import journalPath
from twisted_keycard.store.sqlite._store import SQLiteStore

__all__ = ["SQLiteStore", "connect", "journalPath"]
