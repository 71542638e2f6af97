"""
The SQLite store: issued keycards, revocations and the keyring in one file,
the embedded default, and its revocations also in a journal beside it.
"""

from twisted_keycard.store.sqlite._database import VERSION, connect
from twisted_keycard.store.sqlite._journal import journalPath
from twisted_keycard.store.sqlite._store import SQLiteStore

#: The store format this release writes (the file's C{PRAGMA user_version}):
#: it opens a file of an earlier format by upgrading it, and refuses a newer
#: one.
FORMAT = VERSION

__all__ = ["FORMAT", "SQLiteStore", "connect", "journalPath"]
