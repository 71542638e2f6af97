"""
P2: token checks per second through the product's check,
C{TokenChecker.requestAvatarId} (revocation by id, key, MAC, the marks
look-up for avatar, requester and family, expiry, audience, address), built
as a running bouncer builds it (a store, a L{KeyringHolder} that has loaded
the keyring from it, the reactor as clock, and the L{RevocationMirror} that
a L{RevocationFollower} has read every revocation of the store into), on a
L{MemoryStore} and on an L{SQLiteStore} holding 10,000 revocations; beside
PyJWT's HS256 decode (with audience and expiry checks), itsdangerous, and
the raw HMAC-SHA256 floor.  Also, for comparison, the check without the
mirror on SQLite (revocations read from the store, as a bouncer does before
its catch-up).

Every measure runs in one child process with a running reactor, in turn,
each round starting one further along.  SQLite checks are timed one at a
time (each awaited before the next) and 100 in flight.

    python -m bench.p2_tokens child quick|full    # prints one JSON line
"""

from __future__ import annotations

import hmac
import json
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import itsdangerous
import jwt
from twisted.internet import task
from twisted.internet.defer import ensureDeferred, gatherResults

from twisted_keycard.bouncer import RevocationFollower, newKeycardId
from twisted_keycard.store import MemoryStore, Revocation
from twisted_keycard.store.sqlite import SQLiteStore
from twisted_keycard.tokens import (
    DEFAULT_SKEW,
    Keyring,
    KeyringHolder,
    RevocationMirror,
    TokenChecker,
    TokenClaims,
    TokenExchange,
    sign,
)

from ._common import Figure, asyncRate, figure, inChild, interleaved, rate

TOKENS = 1000
REVOKED = 10_000
IN_FLIGHT = 100
REQUESTER = "keycard-bouncer"
ADDRESS = "127.0.0.1"

NOTES = [
    "P2: TokenChecker(store, keys, reactor, mirror=mirror)"
    ".requestAvatarId(TokenExchange(token, address, requester)) for tokens"
    " signed as a bouncer with TokenPolicy() signs them, as a running bouncer"
    " has it: keys = KeyringHolder(store, reactor) loaded, mirror ="
    " RevocationMirror(reactor) filled by RevocationFollower(store, ...,"
    " mirror=mirror).catchUp(); 10,000 revoked ids in the store; 'no mirror':"
    " the store's isRevoked and revocationsOf instead (a bouncer before its"
    " catch-up); peer: jwt.decode(HS256, audience, expiry); goal >= 5x on"
    " each store",
]


async def bouncersChecker(reactor: Any, store: Any) -> TokenChecker:
    """
    The token checker of a running bouncer on C{store}: its keyring loaded,
    every revocation of the store read into its mirror.
    """

    async def nobodyHolds(revocations: list[Revocation]) -> None:
        pass

    mirror = RevocationMirror(reactor, DEFAULT_SKEW)
    await RevocationFollower(store, reactor, nobodyHolds, mirror=mirror).catchUp()
    keys = KeyringHolder(store, reactor)
    await keys.current()
    return TokenChecker(store, keys, reactor, mirror=mirror)


async def measureAll(
    reactor: Any, quick: bool, directory: str
) -> dict[str, list[float]]:
    seconds, runs = (0.4, 3) if quick else (1.2, 5)
    now = reactor.seconds()
    keyring = Keyring.generate(now)
    stores: dict[str, Any] = {
        "memory": MemoryStore(),
        "sqlite": await SQLiteStore.open(
            os.path.join(directory, "keycard.db"), reactor
        ),
    }
    revoked = [Revocation(newKeycardId(), now + 3600, now) for _ in range(REVOKED)]
    for store in stores.values():
        await store.saveKeyring(keyring)
        await store.revoke(revoked)
    checkers = {
        name: await bouncersChecker(reactor, store) for name, store in stores.items()
    }
    checkers["sqliteStore"] = TokenChecker(
        stores["sqlite"], KeyringHolder(stores["sqlite"], reactor), reactor
    )
    claims = [
        TokenClaims(
            keycardId=newKeycardId(),
            avatarId=f"user{i}",
            issued=now,
            expires=now + 3600,
            bouncerName="bouncer",
            requesterName=REQUESTER,
        )
        for i in range(TOKENS)
    ]
    ours = [sign(c, keyring.signing) for c in claims]
    avatars = [c.avatarId for c in claims]
    secret = keyring.signing.secret
    jwts = [
        jwt.encode(
            {
                "jti": c.keycardId,
                "sub": c.avatarId,
                "iat": int(now),
                "exp": int(now) + 3600,
                "iss": "bouncer",
                "aud": REQUESTER,
            },
            secret,
            algorithm="HS256",
        )
        for c in claims
    ]
    serializer = itsdangerous.URLSafeTimedSerializer(secret)
    dangerous = [
        serializer.dumps({"jti": c.keycardId, "sub": c.avatarId}) for c in claims
    ]
    macs = [hmac.digest(secret, t.encode(), "sha256") for t in ours]
    cursor = [0]

    def nextIndex() -> int:
        i = cursor[0] = (cursor[0] + 1) % TOKENS
        return i

    def checkOne(checker: TokenChecker) -> Callable[[], Coroutine[Any, Any, None]]:
        async def check() -> None:
            i = nextIndex()
            avatar = await checker.requestAvatarId(
                TokenExchange(ours[i], ADDRESS, REQUESTER)
            )
            if avatar != avatars[i]:
                raise AssertionError(f"{avatar!r} for {avatars[i]!r}")

        return check

    def checkMany(checker: TokenChecker) -> Callable[[], Awaitable[None]]:
        one = checkOne(checker)

        async def check() -> None:
            await gatherResults([ensureDeferred(one()) for _ in range(IN_FLIGHT)])

        return check

    def decodeJwt() -> None:
        jwt.decode(jwts[nextIndex()], secret, algorithms=["HS256"], audience=REQUESTER)

    def loadDangerous() -> None:
        serializer.loads(dangerous[nextIndex()], max_age=3600)

    def rawHmac() -> None:
        i = nextIndex()
        hmac.compare_digest(hmac.digest(secret, ours[i].encode(), "sha256"), macs[i])

    def timed(fn: Callable[[], Awaitable[None]], per: int = 1) -> Any:
        async def measure() -> float:
            return await asyncRate(fn, seconds) * per

        return measure

    def timedSync(fn: Callable[[], None]) -> Any:
        async def measure() -> float:
            return rate(fn, seconds)

        return measure

    results = await interleaved(
        {
            "memory": timed(checkOne(checkers["memory"])),
            "sqlite": timed(checkOne(checkers["sqlite"])),
            "sqliteMany": timed(checkMany(checkers["sqlite"]), IN_FLIGHT),
            "sqliteStore": timed(checkOne(checkers["sqliteStore"])),
            "jwt": timedSync(decodeJwt),
            "itsdangerous": timedSync(loadDangerous),
            "hmac": timedSync(rawHmac),
        },
        runs,
    )
    await stores["sqlite"].close()
    return results


def child(quick: bool) -> None:
    async def main(reactor: Any) -> None:
        with tempfile.TemporaryDirectory(prefix="keycard-bench-") as directory:
            results = await measureAll(reactor, quick, directory)
        print(json.dumps(results), flush=True)

    task.react(lambda reactor: ensureDeferred(main(reactor)))


def run(quick: bool) -> list[Figure]:
    r = inChild("bench.p2_tokens", "quick" if quick else "full")
    check = "requestAvatarId"
    return [
        figure(
            "P2",
            f"memory store: {check} vs PyJWT HS256",
            r["memory"],
            r["jwt"],
            "checks/s",
        ).ratioAtLeast(5),
        figure(
            "P2",
            f"SQLite store, one at a time: {check} vs PyJWT",
            r["sqlite"],
            r["jwt"],
            "checks/s",
        ).ratioAtLeast(5),
        figure(
            "P2",
            f"SQLite store, {IN_FLIGHT} in flight: {check} vs PyJWT",
            r["sqliteMany"],
            r["jwt"],
            "checks/s",
        ).ratioAtLeast(5),
        figure(
            "P2",
            f"SQLite store, no mirror (before the catch-up): {check} vs PyJWT",
            r["sqliteStore"],
            r["jwt"],
            "checks/s",
        ),
        figure(
            "P2b",
            f"memory store: {check} vs itsdangerous",
            r["memory"],
            r["itsdangerous"],
            "checks/s",
        ),
        figure(
            "P2b",
            f"SQLite store, one at a time: {check} vs itsdangerous",
            r["sqlite"],
            r["itsdangerous"],
            "checks/s",
        ),
        figure(
            "P2c",
            "memory store: requestAvatarId vs raw HMAC-SHA256 (floor)",
            r["memory"],
            r["hmac"],
            "checks/s",
        ),
    ]


if __name__ == "__main__":
    child(sys.argv[2:] == ["quick"])
