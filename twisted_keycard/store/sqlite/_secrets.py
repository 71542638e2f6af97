"""
The SQLite store's secrets: the keyring that signs tokens, and the secret
of mock challenges, as jobs run inside its transactions (see L{Database}).
"""

from __future__ import annotations

import secrets
import sqlite3

from twisted_keycard._mocks import SECRET_BYTES
from twisted_keycard.store.sqlite import _leases as leases
from twisted_keycard.store.sqlite._schema import SECRETS
from twisted_keycard.tokens._keyring import Keyring, SigningKey


def loadKeyring(c: sqlite3.Connection) -> Keyring | None:
    rows = c.execute("SELECT kid, secret, created, not_after FROM keyring").fetchall()
    if not rows:
        return None
    return Keyring.fromKeys(SigningKey(k, bytes(s), cr, na) for k, s, cr, na in rows)


def saveKeyring(c: sqlite3.Connection, keyring: Keyring) -> None:
    c.execute("DELETE FROM keyring")
    c.executemany(
        "INSERT INTO keyring (kid, secret, created, not_after) VALUES (?, ?, ?, ?)",
        [(k.kid, k.secret, k.created, k.notAfter) for k in keyring.keys],
    )
    leases.keyringSaved(c)


def mockSecret(c: sqlite3.Connection) -> bytes:
    c.execute(SECRETS)
    # In one transaction: of processes racing here, the first wins.
    c.execute(
        "INSERT OR IGNORE INTO secrets (name, secret) VALUES ('mock', ?)",
        (secrets.token_bytes(SECRET_BYTES),),
    )
    row = c.execute("SELECT secret FROM secrets WHERE name = 'mock'")
    return bytes(row.fetchone()[0])
