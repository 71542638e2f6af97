"""
The Redis store: issued keycards, revocations, the keyring, leases and
failed logins in one Redis (or Valkey), shared by bouncers on many hosts.

What several bouncers race on (seat pools, per-avatar caps, reservations,
leases, revocations) is changed by Lua scripts, atomically.  Every key
expires by itself (a revocation when the keycard would have expired), so
the flush methods only clear what has already ended.  Revocations and
keyring saves are published, so that other bouncers read them at once
(L{IStoreChanges}).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_keycard._mocks import SECRET_BYTES
from twisted_keycard.error import KeycardError, QuotaExceeded
from twisted_keycard.store._changes import KEYRING, RECONNECTED, REVOKED, IStoreChanges
from twisted_keycard.store._interfaces import (
    IKeycardStore,
    IKeyringStore,
    ILeaseStore,
    IRevocationStore,
    IThrottleStore,
)
from twisted_keycard.store._records import IssuedKeycard, Revocation
from twisted_keycard.store.redis import _keycardlua as kc
from twisted_keycard.store.redis import _revocationlua as rev
from twisted_keycard.store.redis._codec import (
    fromFields,
    keyFields,
    keyringFrom,
    number,
    pairsToDict,
    recordFields,
    revocationArgs,
    revocationFrom,
    ttl,
)
from twisted_keycard.store.redis._connection import (
    REPLY_TIMEOUT,
    RedisConnection,
    Script,
    StoreUnavailable,
)
from twisted_keycard.store.redis._queue import QUEUE_LIMIT, WriteQueue
from twisted_keycard.store.redis._settings import NAMES, settingsWarnings
from twisted_keycard.store.redis._throttle import FLUSH_BATCH, RedisFailures
from twisted_keycard.store.redis._url import RedisURL, parseRedisURL
from twisted_keycard.tokens._keyring import Keyring

#: Seconds Redis keeps a record past its expiry (clocks of bouncers differ).
GRACE = 60.0
#: Seconds Redis keeps the leases after their last renewal.
LEASES_KEPT = 7 * 86400.0
#: Seconds failed logins are kept by default: the longest throttling window.
FAILURES_KEPT = 86400.0

_SCRIPTS = {
    name: Script(getattr(module, name))
    for module, names in (
        (kc, ["ADD", "REMOVE", "RELEASE", "RENEW", "SELECT", "FLUSH_EXPIRED"]),
        (kc, ["COUNT", "RENEW_LEASE", "RELEASE_LAPSED", "HOLD_UNDER"]),
        (rev, ["REVOKE", "REVOCATIONS_OF", "FLUSH_REVOCATIONS", "SAVE_KEYRING"]),
        (rev, ["MOCK_SECRET"]),
    )
    for name in names
}


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


@implementer(
    IKeycardStore,
    IRevocationStore,
    IKeyringStore,
    IThrottleStore,
    ILeaseStore,
    IStoreChanges,
)
class RedisStore:
    """
    A store in Redis, reached through txredisapi on the reactor, connected
    from construction and reconnected with backoff after an outage.

    While Redis is unreachable, revocation checks fail (so token logins are
    refused) unless C{tokensWhenDown} is C{"accept"}; the records of
    keycards issued without a quota, their removals and failed-login counts
    are queued (up to C{queueLimit}) and written once it is back; every
    other call fails with L{StoreUnavailable}.
    """

    log = Logger()

    def __init__(
        self,
        url: RedisURL | str,
        reactor: Any,
        *,
        password: str | None = None,
        clock: IReactorTime | None = None,
        tokensWhenDown: str = "refuse",
        failuresKept: float = FAILURES_KEPT,
        queueLimit: int = QUEUE_LIMIT,
        replyTimeout: float = REPLY_TIMEOUT,
    ) -> None:
        """
        @param url: a L{RedisURL}, or its text.
        @param reactor: the reactor to connect with.
        @param password: Redis's password (C{AUTH}), if it has one.
        @param clock: the time that expiries are counted from (the
            reactor's by default: the bouncers' clocks).
        @param tokensWhenDown: C{"refuse"} (fail closed) or C{"accept"}
            (answer "not revoked") revocation checks while Redis is
            unreachable.
        @param failuresKept: seconds failed logins are kept: the longest
            throttling window of the bouncers on this store.
        """
        if tokensWhenDown not in ("refuse", "accept"):
            raise ValueError("tokensWhenDown is 'refuse' or 'accept'")
        self.url = parseRedisURL(url) if isinstance(url, str) else url
        self.clock: IReactorTime = clock if clock is not None else reactor
        self.tokensWhenDown = tokensWhenDown
        self._prefix = self.url.prefix
        self._subscribers: list[Callable[[str], object]] = []
        self._queue = WriteQueue(queueLimit)
        self._connection = RedisConnection(
            self.url,
            password,
            reactor,
            onChange=self._changed,
            onUp=self._up,
            onDown=self._down,
            replyTimeout=replyTimeout,
        )
        self._failures = RedisFailures(
            self._connection, self._prefix, self.clock, failuresKept, self._queue
        )
        self._wasUp = False
        self._connection.start()

    def __repr__(self) -> str:
        return f"<RedisStore {self.url}>"

    @classmethod
    def open(
        cls, url: RedisURL | str, reactor: Any, timeout: float = 10.0, **kw: Any
    ) -> Deferred[RedisStore]:
        """
        Connect, and fire once Redis answers.

        @raise StoreUnavailable: (as a failure) if it does not within
            C{timeout} seconds.
        """
        store = cls(url, reactor, **kw)
        return Deferred.fromCoroutine(store._opened(reactor, timeout))

    async def _opened(self, reactor: Any, timeout: float) -> RedisStore:
        up = self._connection.connected()
        late = reactor.callLater(timeout, up.cancel)
        try:
            await up
        except Exception as e:
            await self.close()
            reason = "" if isinstance(e, CancelledError) else f": {e}"
            raise StoreUnavailable(
                f"cannot reach the Redis store {self.url}{reason}"
            ) from None
        finally:
            if late.active():
                late.cancel()
        await self._connection.execute("PING")
        return self

    def close(self) -> Deferred[None]:
        """
        Close the connections and stop reconnecting.
        """
        return self._connection.close()

    def _up(self) -> None:
        self.log.info(
            "connected to the Redis store {url}",
            url=str(self.url),
            event="store.connected",
        )
        self._wasUp = True
        if len(self._queue):
            Deferred.fromCoroutine(self._queue.drain())

    def _down(self) -> None:
        self.log.error(
            "lost the Redis store {url}: token logins are {what} until it is"
            " back; reconnecting",
            url=str(self.url),
            what="accepted" if self.tokensWhenDown == "accept" else "refused",
            event="store.unreachable",
        )

    @property
    def reachable(self) -> bool:
        """
        Whether a connection to Redis is up.
        """
        return self._connection.up

    @property
    def listening(self) -> bool:
        """
        Whether this store hears the changes other processes publish.
        """
        return self._connection.listening

    def checkSettings(self) -> Deferred[list[str]]:
        """
        @return: a L{Deferred} firing with what to warn about Redis's
            durability settings, one line each (see L{settingsWarnings}).
        """
        return Deferred.fromCoroutine(self._checkSettings())

    async def _checkSettings(self) -> list[str]:
        config: dict[str, str] = {}
        try:
            for name in NAMES:
                config.update(
                    pairsToDict(await self._connection.execute("CONFIG", "GET", name))
                )
        except StoreUnavailable:
            raise
        except Exception:
            return settingsWarnings(None)
        return settingsWarnings(config)

    def _run(self, name: str, *args: object) -> Deferred[Any]:
        return self._connection.run(_SCRIPTS[name], [self._prefix, *args])

    def _write(self, what: str, write: Callable[[], Deferred[Any]]) -> Deferred[Any]:
        """
        Write now, or queue the write while Redis is unreachable (or queued
        writes are still being sent, so that writes land in order).
        """
        queue = self._queue
        if not self._connection.up or len(queue) or queue.draining:
            return queue.add(what, write)

        def lost(failure: Failure) -> Deferred[None]:
            failure.trap(StoreUnavailable)
            return queue.add(what, write)

        return write().addErrback(lost)

    def _now(self) -> float:
        return self.clock.seconds()

    # Issued keycards

    def _adding(
        self, record: IssuedKeycard, maxPerAvatar: int | None, poolSize: int | None
    ) -> Callable[[], Deferred[None]]:
        def write() -> Deferred[None]:
            now = self._now()
            d = self._run(
                "ADD",
                ttl(record.expires, now, GRACE),
                "" if maxPerAvatar is None else str(maxPerAvatar),
                "" if poolSize is None else str(poolSize),
                number(record.issued),
                number(now - GRACE),
                *recordFields(record),
            )
            return d.addCallback(self._added, record)

        return write

    @staticmethod
    def _added(outcome: str, record: IssuedKeycard) -> None:
        if outcome == "duplicate":
            raise KeyError(record.keycardId)
        if outcome == "avatar":
            raise QuotaExceeded("too many keycards for this avatar")
        if outcome == "pool":
            raise QuotaExceeded(f"no seat left in pool {record.seatPool!r}")

    def add(self, record: IssuedKeycard) -> Deferred[None]:
        return self._write(
            f"the record of keycard {record.keycardId}",
            self._adding(record, None, None),
        )

    def addWithin(
        self, record: IssuedKeycard, maxPerAvatar: int | None, poolSize: int | None
    ) -> Deferred[None]:
        if maxPerAvatar is None and poolSize is None:
            return self.add(record)
        # Never queued: a seat counted without Redis could be over-granted.
        return self._adding(record, maxPerAvatar, poolSize)()

    def get(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        d = self._connection.execute(
            "HMGET", f"{self._prefix}kc:{keycardId}", *kc.FIELDS
        )
        return d.addCallback(fromFields)

    def remove(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        return self._write(
            f"the removal of keycard {keycardId}",
            lambda: self._run("REMOVE", keycardId).addCallback(fromFields),
        )

    def release(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        return self._write(
            f"the release of keycard {keycardId}",
            lambda: self._run("RELEASE", keycardId).addCallback(fromFields),
        )

    def renew(self, keycardId: str, expires: float) -> Deferred[IssuedKeycard | None]:
        d = self._run(
            "RENEW", keycardId, number(expires), ttl(expires, self._now(), GRACE)
        )
        return d.addCallback(fromFields)

    def _select(
        self, index: str, low: str = "-inf", high: str = "+inf"
    ) -> Deferred[list[IssuedKeycard]]:
        d = self._run("SELECT", index, low, high)
        return d.addCallback(
            lambda rows: sorted(
                (r for r in map(fromFields, rows) if r is not None),
                key=lambda r: r.keycardId,
            )
        )

    def byAvatar(self, avatarId: str) -> Deferred[list[IssuedKeycard]]:
        return self._select(f"ix:a:{avatarId}")

    def byRequester(self, requesterName: str) -> Deferred[list[IssuedKeycard]]:
        return self._select(f"ix:r:{requesterName}")

    def byParent(self, parentId: str) -> Deferred[list[IssuedKeycard]]:
        return self._select(f"ix:p:{parentId}")

    def byFamily(self, familyId: str) -> Deferred[list[IssuedKeycard]]:
        return self._select(f"ix:f:{familyId}")

    def expiredBefore(self, when: float) -> Deferred[list[IssuedKeycard]]:
        return self._select("kc:expiry", "-inf", number(when))

    def flushExpired(self, when: float) -> Deferred[int]:
        return self._flushing("FLUSH_EXPIRED", when)

    def _flushing(self, script: str, when: float) -> Deferred[int]:
        async def flush() -> int:
            removed = 0
            while True:
                outcome = await self._run(script, number(when), str(FLUSH_BATCH))
                done, seen = outcome if isinstance(outcome, list) else (outcome,) * 2
                removed += int(done)
                if int(seen) < FLUSH_BATCH:
                    return removed

        return Deferred.fromCoroutine(flush())

    def count(self) -> Deferred[int]:
        return self._run("COUNT", number(self._now() - GRACE)).addCallback(int)

    # Revocations

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
        if self.tokensWhenDown == "accept" and not self._connection.up:
            return succeed(False)
        d = self._connection.execute("EXISTS", f"{self._prefix}rev:{keycardId}")
        return d.addCallback(lambda found: bool(int(found)))

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
        return self._flushing("FLUSH_REVOCATIONS", when)

    # Failed logins

    def recordFailure(self, keys: Sequence[str], when: float) -> Deferred[None]:
        return self._failures.recordFailure(keys, when)

    def failuresSince(
        self, keys: Sequence[str], since: float
    ) -> Deferred[dict[str, int]]:
        return self._failures.failuresSince(keys, since)

    def reserve(
        self, reservationId: str, limits: Mapping[str, int], since: float, when: float
    ) -> Deferred[bool]:
        return self._failures.reserve(reservationId, limits, since, when)

    def settle(self, reservationId: str, failed: bool) -> Deferred[None]:
        return self._failures.settle(reservationId, failed)

    def flushFailures(self, before: float) -> Deferred[int]:
        return self._failures.flushFailures(before)

    # Keyring

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

    # Leases

    def renewLease(self, holderId: str, when: float, expires: float) -> Deferred[bool]:
        keep = ttl(expires, self._now(), LEASES_KEPT)
        d = self._run("RENEW_LEASE", holderId, number(expires), keep)
        return d.addCallback(lambda known: bool(int(known)))

    def releaseLapsed(self, when: float) -> Deferred[int]:
        return self._run("RELEASE_LAPSED", number(when)).addCallback(int)

    def holdUnder(
        self, keycardId: str, holderId: str
    ) -> Deferred[IssuedKeycard | None]:
        return self._run("HOLD_UNDER", keycardId, holderId).addCallback(fromFields)

    # Changes

    def subscribe(self, callback: Callable[[str], object]) -> Callable[[], None]:
        self._subscribers.append(callback)

        def cancel() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return cancel

    def _changed(self, kind: str) -> None:
        notice = {"revoked": REVOKED, "keyring": KEYRING}.get(kind, RECONNECTED)
        for callback in list(self._subscribers):
            try:
                callback(notice)
            except Exception:
                self.log.failure("a store change subscriber failed")
