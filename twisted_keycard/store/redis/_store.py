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

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from twisted_keycard.store._changes import IStoreChanges
from twisted_keycard.store._interfaces import (
    IKeycardStore,
    IKeyringStore,
    ILeaseStore,
    IRevocationStore,
    IThrottleStore,
)
from twisted_keycard.store._records import IssuedKeycard, Revocation
from twisted_keycard.store.redis._codec import number
from twisted_keycard.store.redis._connection import (
    REPLY_TIMEOUT,
    RedisConnection,
    StoreUnavailable,
)
from twisted_keycard.store.redis._keycards import RedisKeycards
from twisted_keycard.store.redis._queue import QUEUE_LIMIT, WriteQueue
from twisted_keycard.store.redis._revocations import RedisRevocations
from twisted_keycard.store.redis._settings import checkSettings
from twisted_keycard.store.redis._subscribers import Subscribers
from twisted_keycard.store.redis._throttle import RedisFailures
from twisted_keycard.store.redis._url import RedisURL, parseRedisURL
from twisted_keycard.tokens._keyring import Keyring

#: Seconds failed logins are kept by default: the longest throttling window.
FAILURES_KEPT = 86400.0


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
        self._subscribers = Subscribers(self.log)
        self._queue = WriteQueue(queueLimit)
        self._connection = RedisConnection(
            self.url,
            password,
            reactor,
            onChange=self._subscribers.changed,
            onUp=self._up,
            onDown=self._down,
            replyTimeout=replyTimeout,
        )
        self._failures = RedisFailures(
            self._connection, self._prefix, self.clock, failuresKept, self._queue
        )
        self._keycards = RedisKeycards(
            self._connection, self._prefix, self.clock, self._write
        )
        self._revocations = RedisRevocations(
            self._connection, self.url, self.clock, tokensWhenDown
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
        return Deferred.fromCoroutine(checkSettings(self._connection))

    def _write(self, what: str, write: Callable[[], Deferred[Any]]) -> Deferred[Any]:
        """
        Write now, or queue the write while Redis is unreachable (or queued
        writes are still being sent, so that writes land in order).
        """
        return self._queue.writeOrQueue(self._connection.up, what, write)

    # Issued keycards and leases: see RedisKeycards.

    def add(self, record: IssuedKeycard) -> Deferred[None]:
        return self._keycards.add(record)

    def addWithin(
        self, record: IssuedKeycard, maxPerAvatar: int | None, poolSize: int | None
    ) -> Deferred[None]:
        return self._keycards.addWithin(record, maxPerAvatar, poolSize)

    def get(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        return self._keycards.get(keycardId)

    def remove(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        return self._keycards.remove(keycardId)

    def release(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        return self._keycards.release(keycardId)

    def renew(self, keycardId: str, expires: float) -> Deferred[IssuedKeycard | None]:
        return self._keycards.renew(keycardId, expires)

    def byAvatar(self, avatarId: str) -> Deferred[list[IssuedKeycard]]:
        return self._keycards.select(f"ix:a:{avatarId}")

    def byRequester(self, requesterName: str) -> Deferred[list[IssuedKeycard]]:
        return self._keycards.select(f"ix:r:{requesterName}")

    def byParent(self, parentId: str) -> Deferred[list[IssuedKeycard]]:
        return self._keycards.select(f"ix:p:{parentId}")

    def byFamily(self, familyId: str) -> Deferred[list[IssuedKeycard]]:
        return self._keycards.select(f"ix:f:{familyId}")

    def expiredBefore(self, when: float) -> Deferred[list[IssuedKeycard]]:
        return self._keycards.select("kc:expiry", "-inf", number(when))

    def flushExpired(self, when: float) -> Deferred[int]:
        return self._keycards.flushExpired(when)

    def count(self) -> Deferred[int]:
        return self._keycards.count()

    def renewLease(self, holderId: str, when: float, expires: float) -> Deferred[bool]:
        return self._keycards.renewLease(holderId, expires)

    def releaseLapsed(self, when: float) -> Deferred[int]:
        return self._keycards.releaseLapsed(when)

    def holdUnder(
        self, keycardId: str, holderId: str
    ) -> Deferred[IssuedKeycard | None]:
        return self._keycards.holdUnder(keycardId, holderId)

    # Revocations and the keyring: see RedisRevocations.

    def revoke(self, revocations: Sequence[Revocation]) -> Deferred[int]:
        return self._revocations.revoke(revocations)

    def isRevoked(self, keycardId: str) -> Deferred[bool]:
        return self._revocations.isRevoked(keycardId)

    def revocationsOf(self, keycardIds: Sequence[str]) -> Deferred[list[Revocation]]:
        return self._revocations.revocationsOf(keycardIds)

    def revokedSince(
        self, cursor: int, limit: int
    ) -> Deferred[tuple[list[Revocation], int]]:
        return self._revocations.revokedSince(cursor, limit)

    def flushRevocations(self, when: float) -> Deferred[int]:
        return self._revocations.flushRevocations(when)

    def loadKeyring(self) -> Deferred[Keyring | None]:
        return self._revocations.loadKeyring()

    def saveKeyring(self, keyring: Keyring) -> Deferred[None]:
        return self._revocations.saveKeyring(keyring)

    def keyringVersion(self) -> Deferred[int]:
        return self._revocations.keyringVersion()

    def mockSecret(self) -> Deferred[bytes]:
        return self._revocations.mockSecret()

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

    # Changes

    def subscribe(self, callback: Callable[[str], object]) -> Callable[[], None]:
        return self._subscribers.subscribe(callback)
