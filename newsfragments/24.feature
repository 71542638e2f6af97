``keycard --version`` also prints the SQLite store format the release
writes (``twisted_keycard.store.sqlite.FORMAT``), to compare with a file's
(``sqlite3 keycard.db "PRAGMA user_version"``) before an upgrade.
