"""
C{keycard init}: make a data directory with its store's keyring and mock
secret, and a development certificate if asked.
"""

from __future__ import annotations

import sys
import time

from twisted.python.failure import Failure

from twisted_keycard.admin._operations import EXIT_OK, runReactor
from twisted_keycard.error import KeycardError
from twisted_keycard.service._datadir import DataDir
from twisted_keycard.service._devcert import makeDevCertificate
from twisted_keycard.service._stores import openStore, sqlitePath, storePassword
from twisted_keycard.store.redis._url import isRedisURL, parseRedisURL
from twisted_keycard.store.sqlite._store import SQLiteStore
from twisted_keycard.tokens._holder import KeyringHolder
from twisted_keycard.tokens._keyring import Keyring


def init(
    directory: str,
    devCert: str | None,
    store: str | None = None,
    storePasswordFile: str | None = None,
) -> int:
    """
    Make a data directory, and its store's keyring and mock secret (a Redis
    store that has them already, made for another host, keeps them).
    """
    if store is not None and isRedisURL(store):
        parseRedisURL(store)
        keyring = runReactor(lambda reactor: _initRedis(store, storePasswordFile))
        data = DataDir.create(directory, store, storePasswordFile)
        where = f" on the store {parseRedisURL(store)},"
    else:
        if store is not None:
            sqlitePath(store)
            raise KeycardError(
                "a SQLite store is the data directory's keycard.db: drop --store"
            )
        if storePasswordFile is not None:
            raise KeycardError("--store-password-file is for a Redis --store")
        data = DataDir.create(directory)
        keyring = _initSQLite(data)
        where = ""
    print(
        f"made data directory {data.path}{where} with token signing key"
        f" {keyring.signing.kid}"
    )
    if devCert:
        trust = data.tls / "trust" / "ca.pem"
        makeDevCertificate(devCert, data.certificate, trust)
        print(
            f"made a SELF-SIGNED certificate for {devCert}, for development only:\n"
            f"  server: ssl:8800:interface=127.0.0.1:privateKey={data.certificate}\n"
            f"  client: tls:{devCert}:8800:trustRoots={trust.parent}"
        )
    print(f"add a user with: keycard user add --data-dir {data.path} NAME")
    return EXIT_OK


def _initSQLite(data: DataDir) -> Keyring:
    # No reactor yet: the store's work runs inline, so results are ready.
    store = SQLiteStore(str(data.database), threaded=False)
    keyring = Keyring.generate(time.time())
    outcome: list[object] = []
    store.saveKeyring(keyring).addBoth(outcome.append)
    # And the secret of mock challenges, shared by the store's bouncers.
    store.mockSecret().addBoth(outcome.append)
    store.close()
    for result in outcome:
        if isinstance(result, Failure):
            result.raiseException()
    return keyring


async def _initRedis(url: str, passwordFile: str | None) -> Keyring:
    from twisted.internet import reactor

    store = await openStore(url, reactor, storePassword(passwordFile))
    try:
        keyring = await KeyringHolder(store, reactor).load()
        await store.mockSecret()
        for warning in await store.checkSettings():
            print(f"keycard: warning: {warning}", file=sys.stderr)
        return keyring
    finally:
        await store.close()
