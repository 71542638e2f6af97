"""
The operations behind the C{keycard} command, as a Python API: C{keycard
init}, the users file, listing and revoking keycards.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from twisted_keycard._files import writePrivateFile
from twisted_keycard._printable import isoTime, printable
from twisted_keycard._printable import isoTime as when
from twisted_keycard.admin._login import (
    DEFAULT_TIMEOUT,
    FromAgent,
    ReadSecret,
    answererFor,
    checkEndpoint,
    logIn,
    tokenAnswerer,
)
from twisted_keycard.bouncer import DEFAULT_DURATION, Revoker, TokenPolicy
from twisted_keycard.error import (
    InsecureTransport,
    KeycardDenied,
    KeycardError,
    KeycardRefused,
    ProtocolError,
    ServerAuthenticationFailed,
)
from twisted_keycard.keycard import IAnswerer
from twisted_keycard.scram import Verifier, checkUserName, parseVerifiers
from twisted_keycard.service import (
    DataDir,
    clientEndpoint,
    makeDevCertificate,
    openStore,
    sqlitePath,
    storePassword,
)
from twisted_keycard.store import (
    IKeycardStore,
    IRevocationStore,
    IssuedKeycard,
)
from twisted_keycard.store.redis import (
    KeyEncryptionKey,
    ReplicasBehind,
    StoreUnavailable,
    WrongKeyEncryptionKey,
    isRedisURL,
    parseRedisURL,
)
from twisted_keycard.store.sqlite import SQLiteStore
from twisted_keycard.tokens import Keyring, KeyringHolder

#: As long as a token issued now by a bouncer with the defaults can live.
TOKEN_LIFETIME = DEFAULT_DURATION + TokenPolicy().skew


@attrs.frozen
class Outcome:
    """
    What a command found: the lines to print, and whether it matched
    anything (else the command exits with status 1).
    """

    lines: list[str]
    matched: bool = True


async def selectKeycards(
    store: IKeycardStore, avatar: str | None = None, requester: str | None = None
) -> list[IssuedKeycard]:
    """
    The keycards on record, oldest first, of C{avatar} and through
    C{requester} when given.
    """
    if avatar is not None:
        records = await store.byAvatar(avatar)
    elif requester is not None:
        records = await store.byRequester(requester)
    else:
        records = await store.expiredBefore(float("inf"))
    if requester is not None:
        records = [r for r in records if r.requesterName == requester]
    return sorted(records, key=lambda r: (r.issued, r.keycardId))


def table(records: Iterable[IssuedKeycard]) -> list[str]:
    """
    One line per keycard under a header, in columns as wide as their
    longest value; names come from peers, so they are escaped and cannot
    rewrite the screen.
    """
    header = ["id", "avatar", "requester", "held", "issued", "expires"]
    rows = [header] + [
        [
            printable(r.keycardId),
            printable(r.avatarId),
            printable(r.requesterName),
            "yes" if r.held else "no",
            isoTime(r.issued),
            isoTime(r.expires),
        ]
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return [
        " ".join(
            [*(v.ljust(w) for v, w in zip(row[:-1], widths, strict=True)), row[-1]]
        )
        for row in rows
    ]


def asJSON(records: Iterable[IssuedKeycard]) -> str:
    """
    The keycards as a JSON array, one object per keycard, times in ISO
    8601; JSON's escapes keep control characters off the screen.
    """
    return json.dumps(
        [
            {
                "id": r.keycardId,
                "avatar": r.avatarId,
                "requester": r.requesterName,
                "bouncer": r.bouncerName,
                "kind": r.keycardType,
                "address": r.address,
                "held": r.held,
                "issued": isoTime(r.issued),
                "expires": isoTime(r.expires),
                "parent": r.parentId,
                "seatPool": r.seatPool,
            }
            for r in records
        ],
        indent=2,
    )


def _revoker(store: Any, clock: IReactorTime) -> Revoker:
    return Revoker(store, clock, TOKEN_LIFETIME)


async def revokeMatching(
    store: IKeycardStore,
    clock: IReactorTime,
    keycardId: str | None,
    avatar: str | None,
    requester: str | None,
    reason: str,
) -> Outcome:
    """
    Revoke one keycard, or every keycard and token of an avatar or issued
    through a requester; when nothing on record matches, revoke nothing
    and say so (a mistyped id or name would otherwise look revoked).
    """
    revoker = _revoker(store, clock)
    if keycardId is not None:
        what = f"keycard {printable(keycardId)}"
        if await store.get(keycardId) is None:
            assert IRevocationStore.providedBy(store)
            if await store.isRevoked(keycardId):
                return Outcome([f"{what} is already revoked"])
            return Outcome([f"no {what} on record: nothing revoked"], matched=False)
        # The count is of the whole family: the token logins its password
        # login started, each a keycard on record.
        count = await revoker.revokeKeycardIds([keycardId], reason)
        if count > 1:
            done = (
                f"{what} and its family: {keycards(count)} on record, and their tokens"
            )
        else:
            done = f"{what} and its token (no other keycard of its family on record)"
    elif avatar is not None:
        what = f"avatar {printable(avatar)}"
        if not await store.byAvatar(avatar):
            return Outcome([f"no keycard of {what} on record: nothing revoked"], False)
        count = await revoker.revokeAvatar(avatar, reason)
        done = f"every keycard and token of {what} ({keycards(count)} on record)"
    else:
        assert requester is not None
        what = f"requester {printable(requester)}"
        if not await store.byRequester(requester):
            return Outcome(
                [f"no keycard issued through {what} on record: nothing revoked"], False
            )
        count = await revoker.revokeRequester(requester, reason)
        done = (
            f"every keycard and token issued through {what} and their families"
            f" ({keycards(count)} on record)"
        )
    return Outcome([f"revoked {done}; running bouncers refuse them within a second"])


def keycards(count: int) -> str:
    """
    C{"1 keycard"}, C{"2 keycards"}.
    """
    return f"{count} keycard{'' if count == 1 else 's'}"


async def revokeUser(store: IKeycardStore, clock: IReactorTime, name: str) -> str:
    """
    Revoke every keycard and token of a removed user, so that a token they
    saved no longer logs them in.

    @return: the line that says so.
    """
    count = await _revoker(store, clock).revokeAvatar(name, "user removed")
    shown = printable(name)
    if count:
        return f"revoked {keycards(count)} and every token of {shown}"
    return f"{shown} held no keycard; any token of theirs is revoked too"


NAME_LIMIT = 256


def checkName(name: str) -> str:
    """
    @raise ValueError: for a name that cannot be a user name: one the file
        cannot hold, or one SCRAM would refuse (L{checkUserName}), which
        also keeps escapes and bidi overrides out of logs and listings.
    """
    if not name or len(name) > NAME_LIMIT:
        raise ValueError(f"a user name has 1 to {NAME_LIMIT} characters")
    if any(c in name for c in ":\n\r\0") or name != name.strip():
        raise ValueError("a user name may not hold ':', line breaks or edge spaces")
    try:
        return checkUserName(name)
    except ProtocolError as e:
        raise ValueError(str(e)) from None


def readUsers(path: Path) -> dict[str, str]:
    """
    The users and their verifier strings, in file order.
    """
    users: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, _, verifier = line.partition(":")
        users[name] = verifier
    return users


def writeUsers(path: Path, users: dict[str, str]) -> None:
    """
    Replace the users file atomically (write, fsync, rename), mode 0600.
    """
    text = "".join(f"{name}:{verifier}\n" for name, verifier in users.items())
    writePrivateFile(path, text.encode("utf-8"))


def addUser(path: Path, name: str, password: str, iterations: int = 4096) -> bool:
    """
    Add a user, or replace their verifier.

    @return: whether the user is new.
    """
    users = readUsers(path)
    new = checkName(name) not in users
    users[name] = Verifier.fromPassword(password, iterations=iterations).toString()
    writeUsers(path, users)
    return new


def removeUser(path: Path, name: str) -> bool:
    """
    @return: whether there was such a user.
    """
    users = readUsers(path)
    if users.pop(name, None) is None:
        return False
    writeUsers(path, users)
    return True


_T = TypeVar("_T")

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_ERROR = 2
#: C{keycard revoke} matched nothing on record.
EXIT_NO_MATCH = 1

#: C{keycard revoke} applied the revocation, but fewer Redis replicas than
#: the store's URL asks for confirmed it.
EXIT_UNREPLICATED = 3


def runReactor(main: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
    """
    Run the global reactor until C{main(reactor)} is done; return its result
    or raise its exception.  Only the outermost layer calls this.

    @raise KeyboardInterrupt: on SIGINT (Ctrl-C), once the reactor stopped.
    """
    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor
    outcome: list[object] = []

    def start() -> None:
        d = Deferred.fromCoroutine(main(reactor))
        d.addBoth(outcome.append)
        d.addBoth(lambda _: reactor.stop())

    def interrupted(signum: int, frame: object) -> None:
        # Ctrl-C: stop now, whatever the command waits for.  Twisted's loop
        # would catch a KeyboardInterrupt raised inside it, log it and go on.
        outcome.insert(0, Failure(KeyboardInterrupt()))
        reactor.callFromThread(reactor.stop)

    previous = signal.signal(signal.SIGINT, interrupted)
    reactor.callWhenRunning(start)
    try:
        reactor.run(installSignalHandlers=False)
    finally:
        signal.signal(signal.SIGINT, previous)
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

        return await revokeUser(store, reactor, name)

    print(runReactor(lambda reactor: _withStore(data, job)))
    return EXIT_OK


def userList(data: DataDir) -> int:
    """
    Print the users a bouncer on the data directory takes, one a line
    (escaped: the file may have been edited by hand).  Each line it leaves
    out (malformed, or a name given twice) is named on standard error, and
    so is a file with no users at all.
    """
    parsed = parseVerifiers(data.users.read_text())
    for problem in parsed.problems:
        line, _, why = problem.partition(": ")
        print(
            f"keycard: {data.users}: {line} left out: {printable(why)}", file=sys.stderr
        )
    for name in parsed.entries:
        print(printable(name))
    if not parsed.entries:
        taken = " that a bouncer takes" if parsed.problems else ""
        print(
            f"keycard: no users in {data.users}{taken}; add one with:"
            f" keycard user add --data-dir {data.path} NAME",
            file=sys.stderr,
        )
    return EXIT_OK


async def _withStore(
    data: DataDir, job: Callable[[Any], Coroutine[Any, Any, _T]]
) -> _T:
    """
    Run C{job} on the data directory's store (the SQLite file, or the
    Redis store given to C{keycard init --store}), then close it.
    """
    from twisted.internet import reactor

    kek = data.keyEncryptionKey() if isRedisURL(data.store) else None
    store = await openStore(
        data.store, reactor, storePassword(data.storePasswordFile), kek
    )
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
        records = await selectKeycards(store, avatar, requester)
        if json:
            print(asJSON(records))
        else:
            print("\n".join(table(records)))
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
    L{EXIT_NO_MATCH} when nothing on record matches, L{EXIT_ERROR} when the
    store is unreachable (nothing revoked), and L{EXIT_UNREPLICATED} when
    the revocation was applied but fewer Redis replicas than the store's
    C{replicas=} confirmed it.
    """

    async def job(store: Any) -> int:
        from twisted.internet import reactor

        try:
            outcome = await revokeMatching(
                store, reactor, keycardId, avatar, requester, reason
            )
        except ReplicasBehind as e:
            # Applied on the primary: not a failure to revoke, but not safe
            # from a failover either.
            print(
                f"keycard: revoked, but not safe from a failover: {e};"
                " check the replicas, and revoke again if one takes over",
                file=sys.stderr,
            )
            return EXIT_UNREPLICATED
        if not outcome.matched:
            for line in outcome.lines:
                print(f"keycard: {line}", file=sys.stderr)
            return EXIT_NO_MATCH
        print("\n".join(outcome.lines))
        return EXIT_OK

    try:
        result: int = runReactor(lambda reactor: _withStore(data, job))
    except StoreUnavailable as e:
        print(f"keycard: {str(e).rstrip('.')}: nothing revoked", file=sys.stderr)
        return EXIT_ERROR
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


def rewrapKeys(data: DataDir) -> int:
    """
    Wrap the Redis store's keyring and mock secret under a new
    key-encryption key, and replace the data directory's key file with it.
    A data directory made before wrapping (no key file) gets its first
    key, and the store's secrets kept in clear are wrapped.

    The new key is written to C{store.kek.new} first (0600), the store
    changed at once, then the file renamed over C{store.kek}: the key that
    opens the store is on disk at every step.

    @raise KeycardError: for a SQLite store, or a data directory whose key
        does not open the store's secrets.
    """
    if not isRedisURL(data.store):
        raise KeycardError(
            "keys rewrap is for a Redis store: a SQLite store's keyring is in"
            f" {data.database}, private to its owner (mode 0600)"
        )
    path = data.keyEncryptionKeyFile
    pending = path.with_name(path.name + ".new")
    if pending.exists():
        # Left by a rewrap that stopped between Redis and the rename: it
        # may be the only key that opens the store.
        try:
            left = f" (key-encryption key {KeyEncryptionKey.fromFile(pending).id})"
        except (OSError, ValueError):
            left = ""
        raise KeycardError(
            f"{pending} exists{left}: a keys rewrap did not finish; if the"
            " bouncers' error names that key as the store's, move it over"
            f" {path.name}, else delete it; then run keys rewrap again"
        )
    old = data.keyEncryptionKey() if path.exists() else None
    new = KeyEncryptionKey.generate()
    writePrivateFile(pending, new.toFileContent())

    async def job(reactor: Any) -> str:
        password = storePassword(data.storePasswordFile)
        if old is None:
            # Clear secrets, stored before wrapping, are wrapped at open.
            store = await openStore(data.store, reactor, password, new)
            await store.close()
            return "wrapped"
        store = await openStore(data.store, reactor, password, old)
        try:
            await store.rewrapSecrets(new)
        finally:
            await store.close()
        return "rewrapped"

    try:
        done = runReactor(job)
    except WrongKeyEncryptionKey as e:
        pending.unlink()
        raise KeycardError(
            f"{e}; copy {path.name} from a data directory of another host of the store"
        ) from None
    except BaseException:
        pending.unlink()
        raise
    os.replace(pending, path)
    was = "" if old is None else f" (was {old.id})"
    print(
        f"{done} the keyring and mock secret of the store {parseRedisURL(data.store)}"
        f" under new key-encryption key {new.id}{was}, written to {path}"
    )
    print(
        f"copy {path} to the data directory of every other host of this store:"
        " their bouncers keep the keyring they loaded, but need it to start"
        " or to load a new keyring"
    )
    return EXIT_OK


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
    waitForSeat: float | None = None,
) -> int:
    """
    Log in as C{user} with C{kind} (a password, given or read with
    C{readSecret}, or C{keyFile}), or with the token in C{tokenFile}.

    @param waitForSeat: seconds to wait in the queue of a full seat pool,
        printing each new place.
    """
    checkEndpoint(endpoint)
    answerer: IAnswerer | FromAgent
    if tokenFile is not None:
        answerer = tokenAnswerer(tokenFile)
    else:
        assert user is not None
        if readSecret is None:
            assert password is not None
            readSecret = lambda prompt: password  # noqa: E731
        answerer = answererFor(kind, user, readSecret, keyFile, certificate)

    def showPlace(pool: str | None, place: int, waiting: int) -> None:
        where = "" if pool is None else f" in pool {printable(pool)!r}"
        print(f"waiting for a seat{where}: place {place} of {waiting}", flush=True)

    async def job(reactor: Any) -> int:
        connect = clientEndpoint(reactor, endpoint)
        answerers: IAnswerer | list[IAnswerer]
        if isinstance(answerer, FromAgent):
            answerers = await answerer.answerers(reactor, timeout)
        else:
            answerers = answerer
        login = await logIn(
            reactor, connect, answerers, timeout, endpoint, waitForSeat, showPlace
        )
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


def init(
    directory: str,
    devCert: str | None,
    store: str | None = None,
    storePasswordFile: str | None = None,
    storeKeyFile: str | None = None,
) -> int:
    """
    Make a data directory, and its store's keyring and mock secret (a Redis
    store that has them already, made for another host, keeps them).

    @param storeKeyFile: the key-encryption key file of another host of
        the Redis store (its data directory's C{store.kek}), needed when
        the store's secrets are wrapped already; else a new key is made.
    """
    if store is not None and isRedisURL(store):
        parseRedisURL(store)
        kek = (
            KeyEncryptionKey.generate()
            if storeKeyFile is None
            else KeyEncryptionKey.fromFile(storeKeyFile)
        )
        try:
            keyring = runReactor(
                lambda reactor: _initRedis(store, storePasswordFile, kek)
            )
        except WrongKeyEncryptionKey as e:
            hint = (
                "give the store's key-encryption key with --store-key-file"
                " DIR/store.kek (of a data directory of another host)"
                if storeKeyFile is None
                else f"{storeKeyFile} is not the store's key-encryption key"
            )
            raise KeycardError(f"{e}; {hint}") from None
        data = DataDir.create(directory, store, storePasswordFile, kek)
        where = f" on the store {parseRedisURL(store)},"
    else:
        if store is not None:
            sqlitePath(store)
            raise KeycardError(
                "a SQLite store is the data directory's keycard.db: drop --store"
            )
        if storePasswordFile is not None:
            raise KeycardError("--store-password-file is for a Redis --store")
        if storeKeyFile is not None:
            raise KeycardError("--store-key-file is for a Redis --store")
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


async def _initRedis(
    url: str, passwordFile: str | None, kek: KeyEncryptionKey
) -> Keyring:
    from twisted.internet import reactor

    store = await openStore(url, reactor, storePassword(passwordFile), kek)
    try:
        keyring = await KeyringHolder(store, reactor).load()
        await store.mockSecret()
        for warning in await store.checkSettings():
            print(f"keycard: warning: {warning}", file=sys.stderr)
        return keyring
    finally:
        await store.close()
