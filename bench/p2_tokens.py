"""
P2: token verification, including the revocation check on a memory store,
per second, beside PyJWT's HS256 decode, itsdangerous, and the raw HMAC
floor.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable

import itsdangerous
import jwt

from twisted_keycard.bouncer import newKeycardId
from twisted_keycard.store import MemoryStore, Revocation
from twisted_keycard.tokens import Keyring, TokenClaims, keycardIdOf, sign, verify

from ._common import Figure, figure, rates

TOKENS = 1000
REVOKED = 10_000


def run(quick: bool) -> list[Figure]:
    seconds, runs = (1.0, 3) if quick else (6.0, 5)
    now = time.time()
    keyring = Keyring.generate(now)
    store = MemoryStore()
    store.revoke([Revocation(newKeycardId(), now + 3600, now) for _ in range(REVOKED)])
    claims = [
        TokenClaims(
            keycardId=newKeycardId(),
            avatarId=f"user{i}",
            issued=now,
            expires=now + 3600,
            bouncerName="bouncer",
            requesterName="requester",
            address="192.0.2.1",
            claims={"vendor": "acme"},
        )
        for i in range(TOKENS)
    ]
    ours = [sign(c, keyring.signing) for c in claims]
    secret = keyring.signing.secret
    jwts = [
        jwt.encode(
            {
                "jti": c.keycardId,
                "sub": c.avatarId,
                "iat": int(now),
                "exp": int(now) + 3600,
                "iss": "bouncer",
                "aud": "requester",
                "addr": "192.0.2.1",
                "vendor": "acme",
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

    def cycle(items: list[str]) -> Callable[[], str]:
        state = {"i": 0}

        def nextItem() -> str:
            i = state["i"] = (state["i"] + 1) % len(items)
            return items[i]

        return nextItem

    nextOurs, nextJwt, nextDangerous = cycle(ours), cycle(jwts), cycle(dangerous)

    def verifyOurs() -> None:
        token = nextOurs()
        keycardId = keycardIdOf(token)
        if store.isRevokedNow(keycardId):
            raise AssertionError("revoked")
        result = verify(token, keyring, now, keycardId)
        if result.expires < now:
            raise AssertionError("expired")

    def verifyJwt() -> None:
        jwt.decode(nextJwt(), secret, algorithms=["HS256"], audience="requester")

    def verifyDangerous() -> None:
        serializer.loads(nextDangerous(), max_age=3600)

    counter = {"i": 0}

    def rawHmac() -> None:
        i = counter["i"] = (counter["i"] + 1) % TOKENS
        hmac.compare_digest(hmac.digest(secret, ours[i].encode(), "sha256"), macs[i])

    oursRates = rates(verifyOurs, seconds, runs)
    return [
        figure(
            "P2",
            "token verify + revocation check vs PyJWT HS256 decode",
            oursRates,
            rates(verifyJwt, seconds, runs),
            "verify/s",
        ),
        figure(
            "P2b",
            "token verify + revocation check vs itsdangerous loads",
            oursRates,
            rates(verifyDangerous, seconds, runs),
            "verify/s",
        ),
        figure(
            "P2c",
            "raw HMAC-SHA256 floor (ours / floor)",
            oursRates,
            rates(rawHmac, seconds, runs),
            "verify/s",
        ),
    ]
