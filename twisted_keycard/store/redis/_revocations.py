"""
Revocations and the keyring in Redis: the part of
L{twisted_keycard.store.redis.RedisStore} that L{IRevocationStore} and
L{IKeyringStore} read (see L{_revocationlua}).

Followers read the stream of revocations from a cursor: a stream entry's
id, C{MILLISECONDS-SEQUENCE}, as one integer, C{MILLISECONDS << 32 |
SEQUENCE}, in the same order.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from twisted_keycard._mocks import SECRET_BYTES
from twisted_keycard.error import KeycardError
from twisted_keycard.store._batched import BatchedLookups
from twisted_keycard.store._records import Revocation
from twisted_keycard.store.redis import _revocationlua as rev
from twisted_keycard.store.redis._codec import (
    GRACE,
    keyFields,
    keyringFrom,
    number,
    pairsToDict,
    revocationArgs,
    revocationFrom,
)
from twisted_keycard.store.redis._connection import (
    FLUSH_BATCH,
    RedisConnection,
    Script,
    StoreUnavailable,
    inBatches,
)
from twisted_keycard.store.redis._url import RedisURL
from twisted_keycard.tokens._keyring import Keyring

#: Revocation checks answered by one script, at most.
CHECK_BATCH = 500

_SCRIPTS = {
    name: Script(getattr(rev, name))
    for name in [
        "REVOKE", "REVOKED", "REVOCATIONS_OF", "FLUSH_REVOCATIONS",
        "SAVE_KEYRING", "MOCK_SECRET",
    ]
}  # fmt: skip


def _cursor(streamId: str) -> int:
    milliseconds, _, sequence = streamId.partition("-")
    return int(milliseconds) << 32 | int(sequence)


def _streamId(cursor: int) -> str:
    return f"{cursor >> 32}-{cursor & 0xFFFFFFFF}"


class ReplicasBehind(KeycardError):
    """
    Raised when fewer replicas than configured confirmed a revocation in
    time: the primary has it, but a failover could lose it.
    """


class RedisRevocations:
    """
    Revocations, the keyring and the mock secret, in Redis.
    """

    def __init__(
        self,
        connection: RedisConnection,
        url: RedisURL,
        clock: IReactorTime,
        tokensWhenDown: str,
    ) -> None:
        self._connection = connection
        self.url = url
        self._prefix = url.prefix
        self._clock = clock
        self.tokensWhenDown = tokensWhenDown
        self._checks = BatchedLookups(self._revokedOf, CHECK_BATCH)

    def _run(self, name: str, *args: object) -> Deferred[Any]:
        return self._connection.run(_SCRIPTS[name], [self._prefix, *args])

    def _now(self) -> float:
        return self._clock.seconds()

    def revoke(self, revocations: Sequence[Revocation]) -> Deferred[int]:
        if not revocations:
            return succeed(0)
        now = self._now()
        args: list[object] = [self.url.channel, number(now), number(now - GRACE)]
        for revocation in revocations:
            args += revocationArgs(revocation, now, GRACE)
        return Deferred.fromCoroutine(self._revoke(args))

    async def _revoke(self, args: list[object]) -> int:
        added = int(await self._run("REVOKE", *args))
        wanted = self.url.replicas
        if wanted:
            milliseconds = int(self.url.replicaTimeout * 1000)
            confirmed = int(
                await self._connection.execute("WAIT", wanted, milliseconds)
            )
            if confirmed < wanted:
                raise ReplicasBehind(
                    f"the revocation reached {confirmed} of {wanted} Redis"
                    f" replicas in {self.url.replicaTimeout:g}s"
                )
        return added

    def isRevoked(self, keycardId: str) -> Deferred[bool]:
        """
        Checks that arrive while one runs wait for the next, which answers
        them all with one script.
        """
        if self.tokensWhenDown == "accept" and not self._connection.up:
            return succeed(False)
        return self._checks.lookUp(keycardId)

    def _revokedOf(self, ids: list[str]) -> Deferred[set[str]]:
        """
        Those of C{ids} that are revoked, with one command.
        """
        d: Deferred[set[str]]
        if len(ids) == 1:
            exists = self._connection.execute("EXISTS", f"{self._prefix}rev:{ids[0]}")
            d = exists.addCallback(lambda found: set(ids) if int(found) else set())
        else:
            d = self._run("REVOKED", *ids).addCallback(set)
        return d.addErrback(self._acceptsNow)

    def _acceptsNow(self, failure: Failure) -> set[str]:
        """
        A check that failed because Redis was lost answers "not revoked"
        when C{tokensWhenDown="accept"}; any other failure stays.
        """
        if self.tokensWhenDown != "accept":
            failure.raiseException()
        failure.trap(StoreUnavailable)
        return set()

    def revocationsOf(self, keycardIds: Sequence[str]) -> Deferred[list[Revocation]]:
        if not keycardIds or (
            self.tokensWhenDown == "accept" and not self._connection.up
        ):
            return succeed([])
        d = self._run("REVOCATIONS_OF", *keycardIds)
        return d.addCallback(
            lambda rows: [
                Revocation(k, float(e), float(at), why) for k, e, at, why in rows
            ]
        )

    def revokedSince(
        self, cursor: int, limit: int
    ) -> Deferred[tuple[list[Revocation], int]]:
        start = "-" if cursor <= 0 else f"({_streamId(cursor)}"
        d = self._connection.execute(
            "XRANGE", f"{self._prefix}rev:log", start, "+", "COUNT", limit
        )

        def read(entries: list[Any]) -> tuple[list[Revocation], int]:
            if not entries:
                return [], max(cursor, 0)
            found = [revocationFrom(pairsToDict(fields)) for _, fields in entries]
            return found, _cursor(entries[-1][0])

        return d.addCallback(read)

    def flushRevocations(self, when: float) -> Deferred[int]:
        return inBatches(
            lambda: self._run("FLUSH_REVOCATIONS", number(when), str(FLUSH_BATCH))
        )

    def loadKeyring(self) -> Deferred[Keyring | None]:
        d = self._connection.execute("HGETALL", f"{self._prefix}keyring")
        return d.addCallback(lambda values: keyringFrom(pairsToDict(values)))

    def saveKeyring(self, keyring: Keyring) -> Deferred[None]:
        d = self._run("SAVE_KEYRING", self.url.channel, *keyFields(keyring))
        return d.addCallback(lambda _: None)

    def keyringVersion(self) -> Deferred[int]:
        d = self._connection.execute("GET", f"{self._prefix}keyring:version")
        return d.addCallback(lambda version: int(version or 0))

    def mockSecret(self) -> Deferred[bytes]:
        fresh = base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")
        return self._run("MOCK_SECRET", fresh).addCallback(base64.b64decode)
