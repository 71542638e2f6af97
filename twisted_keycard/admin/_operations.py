"""
The operations behind the C{keycard} command, as a Python API.

Each function takes what the command line gave, does the job (running the
reactor where it needs Twisted), prints what the user should see, and
returns the exit status.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from twisted_keycard._isotime import isoTime as when
from twisted_keycard._printable import printable
from twisted_keycard._secretfiles import writePrivateFile
from twisted_keycard.admin import _keycards
from twisted_keycard.admin._login import (
    DEFAULT_TIMEOUT,
    ReadSecret,
    answererFor,
    logIn,
    tokenAnswerer,
)
from twisted_keycard.admin._users import addUser, checkName, readUsers, removeUser
from twisted_keycard.error import (
    InsecureTransport,
    KeycardDenied,
    KeycardError,
    KeycardRefused,
    ServerAuthenticationFailed,
)
from twisted_keycard.keycard._interfaces import IAnswerer
from twisted_keycard.service._datadir import DataDir
from twisted_keycard.service._devcert import makeDevCertificate
from twisted_keycard.service._endpoints import clientEndpoint
from twisted_keycard.service._stores import openStore, sqlitePath, storePassword
from twisted_keycard.store.redis._url import isRedisURL, parseRedisURL
from twisted_keycard.store.sqlite._store import SQLiteStore
from twisted_keycard.tokens._holder import KeyringHolder
from twisted_keycard.tokens._keyring import Keyring

_T = TypeVar("_T")

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_ERROR = 2
#: C{keycard revoke} matched nothing on record.
EXIT_NO_MATCH = 1


def runReactor(main: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
    """
    Run the global reactor until C{main(reactor)} is done; return its result
    or raise its exception.  Only the outermost layer calls this.
    """
    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor
    outcome: list[object] = []

    def start() -> None:
        d = Deferred.fromCoroutine(main(reactor))
        d.addBoth(outcome.append)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


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


def userAdd(data: DataDir, name: str, password: str) -> int:
    new = addUser(data.users, checkName(name), password)
    print(f"{'added' if new else 'changed the password of'} user {name}")
    return EXIT_OK


def userRemove(data: DataDir, name: str) -> int:
    """
    Remove a user, then revoke every keycard and token issued to them, so
    that a saved token no longer logs them in.
    """
    if not removeUser(data.users, name):
        raise KeycardError(f"no user {printable(name)}")
    print(f"removed user {printable(name)}")

    async def job(store: Any) -> str:
        from twisted.internet import reactor

        return await _keycards.revokeUser(store, reactor, name)

    print(runReactor(lambda reactor: _withStore(data, job)))
    return EXIT_OK


def userList(data: DataDir) -> int:
    # Escaped: the file may have been edited by hand.
    for name in readUsers(data.users):
        print(printable(name))
    return EXIT_OK


async def _withStore(
    data: DataDir, job: Callable[[Any], Coroutine[Any, Any, _T]]
) -> _T:
    """
    Run C{job} on the data directory's store (the SQLite file, or the
    Redis store given to C{keycard init --store}), then close it.
    """
    from twisted.internet import reactor

    store = await openStore(data.store, reactor, storePassword(data.storePasswordFile))
    try:
        return await job(store)
    finally:
        await store.close()


def listKeycards(
    data: DataDir,
    json: bool = False,
    avatar: str | None = None,
    requester: str | None = None,
) -> int:
    """
    Print the keycards on record (of C{avatar}, through C{requester}), as a
    table or as JSON.
    """

    async def job(store: Any) -> int:
        records = await _keycards.selectKeycards(store, avatar, requester)
        if json:
            print(_keycards.asJSON(records))
        else:
            print("\n".join(_keycards.table(records)))
        return EXIT_OK

    result: int = runReactor(lambda reactor: _withStore(data, job))
    return result


def revoke(
    data: DataDir,
    keycardId: str | None,
    avatar: str | None,
    requester: str | None,
    reason: str,
) -> int:
    """
    Revoke a keycard, or those of an avatar or a requester; exit with
    L{EXIT_NO_MATCH} when nothing on record matches.
    """

    async def job(store: Any) -> int:
        from twisted.internet import reactor

        outcome = await _keycards.revokeMatching(
            store, reactor, keycardId, avatar, requester, reason
        )
        if not outcome.matched:
            for line in outcome.lines:
                print(f"keycard: {line}", file=sys.stderr)
            return EXIT_NO_MATCH
        print("\n".join(outcome.lines))
        return EXIT_OK

    result: int = runReactor(lambda reactor: _withStore(data, job))
    return result


def rotateKeys(data: DataDir, grace: float | None) -> int:
    """
    Make a new signing key; the older ones verify for C{grace} seconds.

    @raise ValueError: for a negative or infinite grace.
    """
    if grace is not None and not (math.isfinite(grace) and grace >= 0):
        raise ValueError("--grace takes a number of seconds, 0 or more")

    async def job(store: Any) -> int:
        from twisted.internet import reactor

        holder = KeyringHolder(store, reactor)
        fresh = await holder.rotate(grace if grace is not None else 3600.0)
        print(f"new signing key {fresh.kid}; older keys verify until their grace ends")
        return EXIT_OK

    result: int = runReactor(lambda reactor: _withStore(data, job))
    return result


def _endpointParts(description: str) -> list[str]:
    """
    The C{:}-separated parts of an endpoint description, with Twisted's
    backslash escapes undone.
    """
    parts, current, escaped = [], "", False
    for char in description:
        if escaped or char not in "\\:":
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            parts.append(current)
            current = ""
    parts.append(current)
    return parts


def checkEndpoint(endpoint: str) -> None:
    """
    Refuse a client endpoint whose TLS would not check the server: an
    C{ssl:} endpoint without C{hostname=} checks no host name (and, without
    C{caCertsDir=}, no certificate at all), so a man in the middle would
    see the login.

    @raise KeycardError: saying what to use instead.
    """
    parts = _endpointParts(endpoint)
    options = {part.partition("=")[0] for part in parts[1:] if "=" in part}
    if parts[0].lower() == "ssl" and "hostname" not in options:
        raise KeycardError(
            "ssl: does not check the server's certificate; "
            "connect with tls:HOST:PORT:trustRoots=DIR"
        )


def login(
    endpoint: str,
    user: str | None,
    password: str | None,
    tokenFile: str | None,
    saveToken: str | None,
    *,
    kind: str = "scram",
    keyFile: str | None = None,
    certificate: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    readSecret: ReadSecret | None = None,
) -> int:
    """
    Log in as C{user} with C{kind} (a password, given or read with
    C{readSecret}, or C{keyFile}), or with the token in C{tokenFile}.
    """
    checkEndpoint(endpoint)
    answerer: IAnswerer
    if tokenFile is not None:
        answerer = tokenAnswerer(tokenFile)
    else:
        assert user is not None
        if readSecret is None:
            assert password is not None
            readSecret = lambda prompt: password  # noqa: E731
        answerer = answererFor(kind, user, readSecret, keyFile, certificate)

    async def job(reactor: Any) -> int:
        connect = clientEndpoint(reactor, endpoint)
        login = await logIn(reactor, connect, answerer, timeout, endpoint)
        keycard = login.keycard
        print(f"avatar id:  {keycard.avatarId}")
        print(f"keycard id: {keycard.id}")
        print(f"expires:    {when(keycard.expires or 0)}")
        if saveToken is not None:
            if keycard.token is None:
                raise KeycardError("the bouncer issued no token")
            # A new 0600 file renamed into place: a link or a file another
            # user planted at the name is replaced, never written through.
            writePrivateFile(saveToken, (keycard.token + "\n").encode("ascii"))
            print(f"token saved to {saveToken}")
        return EXIT_OK

    try:
        result: int = runReactor(job)
    except KeycardRefused as e:
        # The server's refusal is opaque; a reason found here is safe.
        reason = str(e) if str(e) != KeycardRefused.MESSAGE else ""
        print(f"keycard: login refused{': ' if reason else ''}{reason}")
        return EXIT_REFUSED
    except InsecureTransport:
        raise KeycardError(
            f"--kind {kind} sends the password itself: use a TLS endpoint"
            " (tls:HOST:PORT:trustRoots=DIR)"
        ) from None
    except KeycardDenied as e:
        print(f"keycard: login denied: {e}")
        return EXIT_REFUSED
    except ServerAuthenticationFailed:
        print("keycard: the server could not prove its identity")
        return EXIT_REFUSED
    return result
