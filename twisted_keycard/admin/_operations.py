"""
The operations behind the C{keycard} command, as a Python API (C{keycard
init} is in L{twisted_keycard.admin._init}).

Each function takes what the command line gave, does the job (running the
reactor where it needs Twisted), prints what the user should see, and
returns the exit status.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from twisted_keycard._isotime import isoTime as when
from twisted_keycard._printable import printable
from twisted_keycard._secretfiles import writePrivateFile
from twisted_keycard.admin import _keycards
from twisted_keycard.admin._endpointcheck import checkEndpoint
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
from twisted_keycard.service._endpoints import clientEndpoint
from twisted_keycard.service._stores import openStore, storePassword
from twisted_keycard.tokens._holder import KeyringHolder

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
