"""
The operations behind the C{keycard} command, as a Python API.

Each function takes what the command line gave, does the job (running the
reactor where it needs Twisted), prints what the user should see, and
returns the exit status.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.python.failure import Failure

from twisted_keycard._printable import printable
from twisted_keycard._secretfiles import writePrivateFile
from twisted_keycard.admin._users import addUser, checkName, readUsers, removeUser
from twisted_keycard.bouncer._bouncer import DEFAULT_DURATION
from twisted_keycard.bouncer._policy import TokenPolicy
from twisted_keycard.bouncer._revoker import Revoker
from twisted_keycard.error import (
    KeycardDenied,
    KeycardError,
    KeycardRefused,
    ServerAuthenticationFailed,
)
from twisted_keycard.keycard._interfaces import IAnswerer
from twisted_keycard.pb._client import KeycardClientFactory
from twisted_keycard.scram import SCRAMAnswerer
from twisted_keycard.service._datadir import DataDir
from twisted_keycard.service._devcert import makeDevCertificate
from twisted_keycard.store.sqlite._store import SQLiteStore
from twisted_keycard.tokencard import TokenAnswerer
from twisted_keycard.tokens._holder import KeyringHolder
from twisted_keycard.tokens._keyring import Keyring

EXIT_OK = 0
EXIT_REFUSED = 1


def when(seconds: float) -> str:
    """
    A POSIX time as an ISO 8601 UTC string.
    """
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(
        timespec="seconds"
    )


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


def init(directory: str, devCert: str | None) -> int:
    data = DataDir.create(directory)
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
    print(
        f"made data directory {data.path} with token signing key {keyring.signing.kid}"
    )
    if devCert:
        trust = data.tls / "trust" / "ca.pem"
        makeDevCertificate(devCert, data.certificate, trust)
        print(
            f"made a SELF-SIGNED certificate for {devCert}, for development only:\n"
            f"  server: ssl:8800:privateKey={data.certificate}\n"
            f"  client: tls:{devCert}:8800:trustRoots={trust.parent}"
        )
    print(f"add a user with: keycard user add --data-dir {data.path} NAME")
    return EXIT_OK


def userAdd(data: DataDir, name: str, password: str) -> int:
    new = addUser(data.users, checkName(name), password)
    print(f"{'added' if new else 'changed the password of'} user {name}")
    return EXIT_OK


def userRemove(data: DataDir, name: str) -> int:
    if not removeUser(data.users, name):
        raise KeycardError(f"no user {printable(name)}")
    print(f"removed user {printable(name)}")
    return EXIT_OK


def userList(data: DataDir) -> int:
    # Escaped: the file may have been edited by hand.
    for name in readUsers(data.users):
        print(printable(name))
    return EXIT_OK


async def _withStore(
    data: DataDir, job: Callable[[SQLiteStore], Coroutine[Any, Any, int]]
) -> int:
    store = await SQLiteStore.open(str(data.database))
    try:
        return await job(store)
    finally:
        await store.close()


def listKeycards(data: DataDir) -> int:
    async def job(store: SQLiteStore) -> int:
        records = await store.expiredBefore(float("inf"))
        print(
            f"{'id':<33} {'avatar':<12} {'requester':<12} {'held':<5}"
            f" {'issued':<26} expires"
        )
        # Names come from peers: escaped, so they cannot rewrite the screen.
        for r in sorted(records, key=lambda r: r.issued):
            print(
                f"{printable(r.keycardId):<33} {printable(r.avatarId):<12}"
                f" {printable(r.requesterName):<12}"
                f" {'yes' if r.held else 'no':<5} {when(r.issued):<26}"
                f" {when(r.expires)}"
            )
        return EXIT_OK

    result: int = runReactor(lambda reactor: _withStore(data, job))
    return result


def _revoker(store: SQLiteStore, reactor: Any) -> Revoker:
    # As long as a token issued now by a bouncer with the defaults can live.
    tokenLifetime = DEFAULT_DURATION + TokenPolicy().skew
    return Revoker(store, reactor, tokenLifetime)


def revoke(
    data: DataDir,
    keycardId: str | None,
    avatar: str | None,
    requester: str | None,
    reason: str,
) -> int:
    async def job(store: SQLiteStore) -> int:
        from twisted.internet import reactor

        revoker = _revoker(store, reactor)
        if keycardId is not None:
            count = await revoker.revokeKeycardIds([keycardId], reason)
            what = f"keycard {keycardId}"
        elif avatar is not None:
            count = await revoker.revokeAvatar(avatar, reason)
            what = f"every keycard and token of avatar {avatar}"
        else:
            assert requester is not None
            count = await revoker.revokeRequester(requester, reason)
            what = f"every keycard and token issued through {requester}"
        print(f"revoked {what} ({count} keycard(s) on record); refused from now on")
        return EXIT_OK

    result: int = runReactor(lambda reactor: _withStore(data, job))
    return result


def rotateKeys(data: DataDir, grace: float | None) -> int:
    async def job(store: SQLiteStore) -> int:
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
) -> int:
    answerer: IAnswerer
    if tokenFile is not None:
        answerer = TokenAnswerer(Path(tokenFile).read_text().strip())
    else:
        assert user is not None and password is not None
        answerer = SCRAMAnswerer(user, password)

    async def job(reactor: Any) -> int:
        factory = KeycardClientFactory()
        await clientFromString(reactor, endpoint).connect(factory)
        try:
            login = await factory.loginWithKeycard([answerer])
        finally:
            factory.disconnect()
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
    except KeycardRefused:
        print("keycard: login refused")
        return EXIT_REFUSED
    except KeycardDenied as e:
        print(f"keycard: login denied: {e}")
        return EXIT_REFUSED
    except ServerAuthenticationFailed:
        print("keycard: the server could not prove its identity")
        return EXIT_REFUSED
    return result
