"""
The Redis store: issued keycards, revocations, the keyring, leases and
failed logins in one Redis (or one master under Sentinel), shared by
bouncers on several hosts; its push to subscribers, and the writes that
wait while Redis is unreachable.
"""

from __future__ import annotations

import json
import os
import secrets
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_keycard._mocks import SECRET_BYTES
from twisted_keycard.error import KeycardError
from twisted_keycard.store._interfaces import (
    KEYRING,
    RECONNECTED,
    REVOKED,
    SEAT,
    BatchedLookups,
    IKeycardStore,
    IKeyringStore,
    ILeaseStore,
    IRevocationStore,
    ISeatQueue,
    IssuedKeycard,
    IStoreChanges,
    IStoreHealth,
    IThrottleStore,
    QueueLimits,
    Revocation,
    SeatWaiter,
    ThrottleEvent,
    ThrottleShare,
    queueRefusal,
    seatRefusal,
)
from twisted_keycard.store.redis import _lua as kc
from twisted_keycard.store.redis import _lua as lua
from twisted_keycard.store.redis import _lua as rev
from twisted_keycard.store.redis import _wrap as wrap
from twisted_keycard.store.redis._connection import (
    FLUSH_BATCH,
    REPLY_TIMEOUT,
    RedisConnection,
    RedisURL,
    Script,
    StoreUnavailable,
    checkSettings,
    inBatches,
    parseRedisURL,
)
from twisted_keycard.store.redis._lua import (
    GRACE,
    fromFields,
    number,
    pairsToDict,
    recordFields,
    revocationArgs,
    revocationFrom,
    ttl,
)
from twisted_keycard.store.redis._wrap import (
    CHANGING,
    SECRETS_RETRIES,
    KeyEncryptionKey,
    SecretsChanging,
    SecretsSnapshot,
    SecretsWrapper,
    wrapArgs,
)
from twisted_keycard.tokens import Keyring

#: Seconds Redis keeps the leases after their last renewal.
LEASES_KEPT = 7 * 86400.0

_KEYCARD_SCRIPTS = {
    name: Script(getattr(kc, name))
    for name in [
        "ADD", "REMOVE", "RELEASE", "RENEW", "SELECT", "FLUSH_EXPIRED",
        "COUNT", "RENEW_LEASE", "RELEASE_LAPSED", "HOLD_UNDER",
        "JOIN_QUEUE", "RENEW_PLACE", "QUEUE_PLACE", "LEAVE_QUEUE", "WAITERS",
        "SEATS_TAKEN",
    ]
}  # fmt: skip

#: Queue a write while Redis is unreachable, or send it: see RedisStore.
Write = Callable[[str, Callable[[], Deferred[Any]]], Deferred[Any]]


class RedisKeycards:
    """
    Issued keycards and leases, in Redis.  Expiries (and so TTLs) are
    counted by C{clock}.
    """

    def __init__(
        self,
        connection: RedisConnection,
        prefix: str,
        clock: IReactorTime,
        write: Write,
        channel: str = "",
    ) -> None:
        """
        @param write: sends a write, or queues it while Redis is
            unreachable (see L{RedisStore}).
        @param channel: the store's channel, told of each seat freed.
        """
        self._connection = connection
        self._prefix = prefix
        self._clock = clock
        self._write = write
        self._channel = channel

    def _run(self, name: str, *args: object) -> Deferred[Any]:
        return self._connection.run(_KEYCARD_SCRIPTS[name], [self._prefix, *args])

    def _now(self) -> float:
        return self._clock.seconds()

    def _adding(
        self,
        record: IssuedKeycard,
        maxPerAvatar: int | None,
        poolSize: int | None,
        seatsPerAvatar: int | None = None,
        ticketId: str | None = None,
    ) -> Callable[[], Deferred[None]]:
        def write() -> Deferred[None]:
            now = self._now()
            d = self._run(
                "ADD",
                ttl(record.expires, now, GRACE),
                _optional(maxPerAvatar),
                _optional(poolSize),
                number(record.issued),
                number(now - GRACE),
                _optional(seatsPerAvatar),
                ticketId or "",
                *recordFields(record),
            )
            return d.addCallback(self._added, record)

        return write

    @staticmethod
    def _added(outcome: str, record: IssuedKeycard) -> None:
        if outcome == "duplicate":
            raise KeyError(record.keycardId)
        if outcome != "ok":
            raise seatRefusal(record.seatPool or "", outcome)

    def add(self, record: IssuedKeycard) -> Deferred[None]:
        return self._write(
            f"the record of keycard {record.keycardId}",
            self._adding(record, None, None),
        )

    def addWithin(
        self,
        record: IssuedKeycard,
        maxPerAvatar: int | None,
        poolSize: int | None,
        seatsPerAvatar: int | None = None,
        ticketId: str | None = None,
    ) -> Deferred[None]:
        if maxPerAvatar is None and poolSize is None and seatsPerAvatar is None:
            return self.add(record)
        # Never queued: a seat counted without Redis could be over-granted.
        return self._adding(record, maxPerAvatar, poolSize, seatsPerAvatar, ticketId)()

    def get(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        d = self._connection.execute(
            "HMGET", f"{self._prefix}kc:{keycardId}", *kc.FIELDS
        )
        return d.addCallback(fromFields)

    def remove(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        return self._write(
            f"the removal of keycard {keycardId}",
            lambda: self._run("REMOVE", keycardId, self._channel).addCallback(
                fromFields
            ),
        )

    def release(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        return self._write(
            f"the release of keycard {keycardId}",
            lambda: self._run("RELEASE", keycardId, self._channel).addCallback(
                fromFields
            ),
        )

    def renew(self, keycardId: str, expires: float) -> Deferred[IssuedKeycard | None]:
        d = self._run(
            "RENEW", keycardId, number(expires), ttl(expires, self._now(), GRACE)
        )
        return d.addCallback(fromFields)

    def select(
        self, index: str, low: str = "-inf", high: str = "+inf"
    ) -> Deferred[list[IssuedKeycard]]:
        d = self._run("SELECT", index, low, high)
        return d.addCallback(
            lambda rows: sorted(
                (r for r in map(fromFields, rows) if r is not None),
                key=lambda r: r.keycardId,
            )
        )

    def flushExpired(self, when: float) -> Deferred[int]:
        return inBatches(
            lambda: self._run("FLUSH_EXPIRED", number(when), str(FLUSH_BATCH))
        )

    def count(self) -> Deferred[int]:
        return self._run("COUNT", number(self._now() - GRACE)).addCallback(int)

    def renewLease(self, holderId: str, expires: float) -> Deferred[bool]:
        keep = ttl(expires, self._now(), LEASES_KEPT)
        d = self._run("RENEW_LEASE", holderId, number(expires), keep)
        return d.addCallback(lambda known: bool(int(known)))

    def releaseLapsed(self, when: float) -> Deferred[int]:
        d = self._run("RELEASE_LAPSED", number(when), self._channel)
        return d.addCallback(int)

    def holdUnder(
        self, keycardId: str, holderId: str
    ) -> Deferred[IssuedKeycard | None]:
        return self._run("HOLD_UNDER", keycardId, holderId).addCallback(fromFields)

    def joinQueue(
        self, waiter: SeatWaiter, when: float, limits: QueueLimits
    ) -> Deferred[tuple[int, int]]:
        d = self._run(
            "JOIN_QUEUE",
            waiter.pool,
            waiter.ticketId,
            waiter.avatarId,
            waiter.address or "",
            number(waiter.lapses),
            number(when),
            ttl(waiter.lapses, self._now(), GRACE),
            str(limits.size),
            _optional(limits.perAvatar),
            _optional(limits.perAddress),
        )

        def joined(outcome: list[int] | str) -> tuple[int, int]:
            if isinstance(outcome, str):
                raise queueRefusal(waiter.pool, outcome)
            place, waiting = outcome
            return int(place), int(waiting)

        return d.addCallback(joined)

    def renewPlace(
        self, pool: str, ticketId: str, lapses: float, when: float
    ) -> Deferred[tuple[int, int] | None]:
        keep = ttl(lapses, self._now(), GRACE)
        d = self._run("RENEW_PLACE", pool, ticketId, number(lapses), number(when), keep)
        return d.addCallback(
            lambda moved: None if not moved else (int(moved[0]), int(moved[1]))
        )

    def queuePlace(self, pool: str, ticketId: str, when: float) -> Deferred[int | None]:
        return self._run("QUEUE_PLACE", pool, ticketId, number(when))

    def leaveQueue(self, pool: str, ticketId: str) -> Deferred[bool]:
        return self._run("LEAVE_QUEUE", pool, ticketId).addCallback(
            lambda left: bool(int(left))
        )

    def seatsTaken(self, pool: str, when: float) -> Deferred[int]:
        return self._run("SEATS_TAKEN", pool, number(when)).addCallback(int)

    def waiters(self, pool: str, when: float) -> Deferred[list[SeatWaiter]]:
        def fromRows(rows: list[Any]) -> list[SeatWaiter]:
            found = []
            for ticketId, text, lapses in rows:
                w = json.loads(text)
                found.append(
                    SeatWaiter(ticketId, pool, w["a"], w.get("ad"), float(lapses))
                )
            return found

        return self._run("WAITERS", pool, number(when)).addCallback(fromRows)


def _optional(limit: int | None) -> str:
    """
    A limit as a script's argument: C{''} for none.
    """
    return "" if limit is None else str(limit)


#: Revocation checks answered by one script, at most.
CHECK_BATCH = 500

_REVOCATION_SCRIPTS = {
    name: Script(getattr(rev, name))
    for name in [
        "REVOKE", "REVOKED", "REVOCATIONS_OF", "FLUSH_REVOCATIONS",
        "SAVE_KEYRING", "MOCK_SECRET",
    ]
}  # fmt: skip
_REVOCATION_SCRIPTS["READ_SECRETS"] = Script(wrap.READ_SECRETS)
_REVOCATION_SCRIPTS["WRAP_SECRETS"] = Script(wrap.WRAP_SECRETS)


def _cursor(streamId: str) -> int:
    milliseconds, _, sequence = streamId.partition("-")
    return int(milliseconds) << 32 | int(sequence)


def _streamId(cursor: int) -> str:
    return f"{cursor >> 32}-{cursor & 0xFFFFFFFF}"


class ReplicasBehind(KeycardError):
    """
    Raised when fewer replicas than configured confirmed a revocation in
    time: the primary has it (it was applied), but a failover could lose
    it.

    @ivar confirmed: the replicas that confirmed it.
    @ivar wanted: the replicas the store's URL asks for (C{replicas=}).
    """

    def __init__(self, message: str, confirmed: int = 0, wanted: int = 0) -> None:
        super().__init__(message)
        self.confirmed = confirmed
        self.wanted = wanted


class NoKeyEncryptionKey(KeycardError):
    """
    Raised when a Redis store given no key-encryption key is asked for its
    keyring or mock secret.
    """


class RedisRevocations:
    """
    Revocations, the keyring and the mock secret, in Redis; the keyring and
    mock secret wrapped under a key-encryption key (see L{SecretsWrapper}).
    """

    log = Logger()

    def __init__(
        self,
        connection: RedisConnection,
        url: RedisURL,
        clock: IReactorTime,
        tokensWhenDown: str,
        keyEncryptionKey: KeyEncryptionKey | None = None,
    ) -> None:
        """
        @param keyEncryptionKey: what the keyring and mock secret are
            wrapped under; without one, they cannot be read or written.
        """
        self._connection = connection
        self.url = url
        self._prefix = url.prefix
        self._secrets = (
            None
            if keyEncryptionKey is None
            else SecretsWrapper(keyEncryptionKey, url.prefix)
        )
        self._clock = clock
        self.tokensWhenDown = tokensWhenDown
        self._checks = BatchedLookups(self._revokedOf, CHECK_BATCH)

    def _run(self, name: str, *args: object) -> Deferred[Any]:
        return self._connection.run(_REVOCATION_SCRIPTS[name], [self._prefix, *args])

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
                    f"applied, replicated to {confirmed} of {wanted} Redis"
                    f" replicas in {self.url.replicaTimeout:g}s",
                    confirmed,
                    wanted,
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

    def _wrapper(self) -> SecretsWrapper:
        if self._secrets is None:
            raise NoKeyEncryptionKey(
                "this Redis store was given no key-encryption key"
                " (RedisStore(..., keyEncryptionKey=...)): it keeps no keyring"
                " or mock secret"
            )
        return self._secrets

    async def wrapped(self) -> SecretsSnapshot:
        """
        The store's secrets, read at once, after wrapping them under the
        key-encryption key if they were stored before wrapping (in clear,
        with no key check) or the store is new.

        @raise WrongKeyEncryptionKey: if they are wrapped under another
            key, or were changed.
        """
        wrapper = self._wrapper()
        for _ in range(SECRETS_RETRIES):
            reply = await self._run("READ_SECRETS")
            plan = wrapper.plan(SecretsSnapshot.fromReply(reply))
            if plan.write is None:
                return plan.snapshot
            written = int(await self._run("WRAP_SECRETS", *plan.wrapArgs()))
            if written and (plan.snapshot.keyring or plan.snapshot.mock is not None):
                self.log.warn(
                    "wrapped the keyring and mock secret of the Redis store"
                    " {url}, stored in clear before, under key-encryption"
                    " key {kek}",
                    url=str(self.url),
                    kek=wrapper.kek.id,
                    event="store.wrapped",
                )
        raise SecretsChanging(CHANGING)

    async def rewrap(self, new: KeyEncryptionKey) -> SecretsSnapshot:
        """
        Wrap the keyring and mock secret under C{new} in place of this
        store's key-encryption key, at once.  Processes holding the old key
        then cannot read them (see L{rewrapSecrets}).

        @return: the secrets as they were before.
        """
        wrapper = self._wrapper()
        for _ in range(SECRETS_RETRIES):
            snapshot = await self.wrapped()
            write = wrapper.rewrap(snapshot, new)
            if int(await self._run("WRAP_SECRETS", *wrapArgs(snapshot, write))):
                self._secrets = SecretsWrapper(new, self._prefix)
                return snapshot
        raise SecretsChanging(CHANGING)

    def loadKeyring(self) -> Deferred[Keyring | None]:
        return Deferred.fromCoroutine(self._loadKeyring())

    async def _loadKeyring(self) -> Keyring | None:
        snapshot = await self.wrapped()
        return self._wrapper().unwrapKeyring(snapshot.keyring, snapshot.version)

    def saveKeyring(self, keyring: Keyring) -> Deferred[None]:
        return Deferred.fromCoroutine(self._saveKeyring(keyring))

    async def _saveKeyring(self, keyring: Keyring) -> None:
        for _ in range(SECRETS_RETRIES):
            snapshot = await self.wrapped()
            assert snapshot.check is not None
            fields = self._wrapper().wrapKeyring(keyring, snapshot.version + 1)
            if int(
                await self._run(
                    "SAVE_KEYRING",
                    self.url.channel,
                    str(snapshot.version),
                    snapshot.check,
                    *fields,
                )
            ):
                return
        raise SecretsChanging(CHANGING)

    def keyringVersion(self) -> Deferred[int]:
        d = self._connection.execute("GET", f"{self._prefix}keyring:version")
        return d.addCallback(lambda version: int(version or 0))

    def mockSecret(self) -> Deferred[bytes]:
        return Deferred.fromCoroutine(self._mockSecret())

    async def _mockSecret(self) -> bytes:
        await self.wrapped()
        wrapper = self._wrapper()
        fresh = wrapper.wrapMock(secrets.token_bytes(SECRET_BYTES))
        return wrapper.unwrapMock(await self._run("MOCK_SECRET", fresh))


class Subscribers:
    """
    The callbacks of L{IStoreChanges.subscribe}, called with each change
    the store's connection hears.
    """

    def __init__(self, log: Logger) -> None:
        """
        @param log: the store's, where a failing subscriber is logged.
        """
        self.log = log
        self._callbacks: list[Callable[[str], object]] = []

    def subscribe(self, callback: Callable[[str], object]) -> Callable[[], None]:
        """
        Call C{callback} with each change; see L{IStoreChanges.subscribe}.

        @return: a function that stops the calls.
        """
        self._callbacks.append(callback)

        def cancel() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return cancel

    def changed(self, kind: str) -> None:
        """
        Tell every subscriber of a change the connection heard: C{kind} is
        C{"revoked"}, C{"keyring"}, C{"seat"}, or anything else for a
        reconnection.
        """
        notice = {"revoked": REVOKED, "keyring": KEYRING, "seat": SEAT}.get(
            kind, RECONNECTED
        )
        for callback in list(self._callbacks):
            try:
                callback(notice)
            except Exception:
                self.log.failure("a store change subscriber failed")


#: Writes queued at most while Redis is unreachable.
QUEUE_LIMIT = 10_000

QueuedWrite = Callable[[], Deferred[object]]


@attrs.define
class WriteQueue:
    """
    Writes waiting for Redis, oldest first.

    @ivar limit: how many may wait; past that, a write fails with
        L{StoreUnavailable}.
    @ivar draining: whether queued writes are being sent: writes made
        meanwhile are queued behind them, so that they land in order.
    """

    limit: int = QUEUE_LIMIT
    draining: bool = False
    _writes: deque[tuple[str, QueuedWrite]] = attrs.field(factory=deque)
    log = Logger()

    def __len__(self) -> int:
        return len(self._writes)

    def add(self, what: str, write: QueuedWrite) -> Deferred[None]:
        """
        Queue C{write}, described as C{what} for the log.

        @return: a L{Deferred} firing at once with C{None}, or failing with
            L{StoreUnavailable} when the queue is full.
        """
        if len(self._writes) >= self.limit:
            self.log.error(
                "the Redis store is unreachable and {count} writes wait:"
                " refusing {what}",
                count=len(self._writes),
                what=what,
                event="store.queue.full",
            )
            return fail(StoreUnavailable("the Redis store is unreachable"))
        if not self._writes and not self.draining:
            self.log.warn(
                "the Redis store is unreachable: queueing {what} and later writes",
                what=what,
                event="store.queue.started",
            )
        self._writes.append((what, write))
        return succeed(None)

    def writeOrQueue(self, up: bool, what: str, write: QueuedWrite) -> Deferred[Any]:
        """
        Write now, or queue the write while Redis is unreachable (C{up} is
        false, or the write fails with L{StoreUnavailable}) or queued writes
        are still being sent, so that writes land in order.
        """
        if not up or len(self) or self.draining:
            return self.add(what, write)

        def lost(failure: Failure) -> Deferred[None]:
            failure.trap(StoreUnavailable)
            return self.add(what, write)

        return write().addErrback(lost)

    async def drain(self) -> int:
        """
        Send the queued writes in order.  One that fails for another reason
        than Redis being unreachable (a keycard recorded meanwhile) is
        logged and dropped; if Redis is lost again, the rest stay queued.

        @return: how many were sent.
        """
        if self.draining:
            return 0
        self.draining = True
        sent = 0
        try:
            while self._writes:
                what, write = self._writes[0]
                try:
                    await write()
                except StoreUnavailable:
                    return sent
                except Exception:
                    self.log.failure("a queued write ({what}) failed", what=what)
                self._writes.popleft()
                sent += 1
        finally:
            self.draining = False
        if sent:
            self.log.info(
                "the Redis store is back: wrote {count} queued writes",
                count=sent,
                event="store.queue.drained",
            )
        return sent


_SHARE = Script(lua.SHARE_THROTTLE)
_FLUSH = Script(lua.FLUSH_THROTTLE)

#: Entries (one per call that wrote events) the throttle log keeps at most:
#: a bouncer writes about one a second.
THROTTLE_ENTRIES = 100_000


class RedisThrottleLog:
    """
    The log of throttle events in Redis, a stream kept C{keep} seconds
    after its last write (the longest throttling window of the bouncers
    sharing it), of at most L{THROTTLE_ENTRIES} entries.  While Redis is
    unreachable, a share fails and its bouncer keeps its events to send
    again.
    """

    def __init__(self, connection: RedisConnection, prefix: str, keep: float) -> None:
        self._connection = connection
        self._prefix = prefix
        self._keep = keep

    def share(
        self, source: str, events: Sequence[ThrottleEvent], cursor: int, limit: int
    ) -> Deferred[ThrottleShare]:
        start = "-" if cursor <= 0 else f"({_streamId(cursor)}"
        args = [self._prefix, source, start, str(max(limit, 0))]
        args += [str(int(self._keep) + 1), str(THROTTLE_ENTRIES)]
        if events:
            latest = max(event.at for event in events)
            packed = [[e.key, e.at, e.kind] for e in events]
            args += [number(latest), json.dumps(packed, separators=(",", ":"))]
        d = self._connection.run(_SHARE, args)

        def read(result: list[Any]) -> ThrottleShare:
            last, count, *entries = result
            found = [
                ThrottleEvent(key, float(at), kind)
                for entry in entries
                for key, at, kind in json.loads(entry)
            ]
            newCursor = _cursor(last) if last else max(cursor, 0)
            return ThrottleShare(found, newCursor, limit > 0 and int(count) >= limit)

        return d.addCallback(read)

    def flush(self, before: float) -> Deferred[int]:
        return inBatches(
            lambda: self._connection.run(
                _FLUSH, [self._prefix, number(before), str(FLUSH_BATCH)]
            )
        )


#: Seconds failed logins are kept by default: the longest throttling window.
FAILURES_KEPT = 86400.0


@implementer(
    IKeycardStore,
    IRevocationStore,
    IKeyringStore,
    IThrottleStore,
    ILeaseStore,
    IStoreChanges,
    IStoreHealth,
    ISeatQueue,
)
class RedisStore:
    """
    A store in Redis, reached through txredisapi on the reactor, connected
    from construction and reconnected with backoff after an outage.

    While Redis is unreachable, revocation checks fail (so token logins are
    refused) unless C{tokensWhenDown} is C{"accept"}; the records of
    keycards issued without a quota and their removals are queued (up to
    C{queueLimit}) and written once it is back; every other call fails with
    L{StoreUnavailable} (a bouncer keeps its throttle events, and sends
    them again).
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
        keyEncryptionKey: KeyEncryptionKey | str | os.PathLike[str] | None = None,
    ) -> None:
        """
        @param url: a L{RedisURL}, or its text.
        @param reactor: the reactor to connect with.
        @param password: Redis's password (C{AUTH}), if it has one.
        @param keyEncryptionKey: the key-encryption key that the keyring
            (the token signing keys) and the mock secret are wrapped under
            in Redis: a L{KeyEncryptionKey}, or the path of its file (a
            data directory's C{store.kek}, the same on every host of the
            store).  Without one, the store keeps revocations and keycards
            but no keyring: L{loadKeyring}, L{saveKeyring} and
            L{mockSecret} fail with L{NoKeyEncryptionKey}.  Secrets stored
            in clear (before wrapping) are wrapped at their first use.
        @raise OSError: if the key's file cannot be read.
        @raise ValueError: if it holds no key.
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
        if keyEncryptionKey is not None and not isinstance(
            keyEncryptionKey, KeyEncryptionKey
        ):
            keyEncryptionKey = KeyEncryptionKey.fromFile(keyEncryptionKey)
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
        self._throttle = RedisThrottleLog(self._connection, self._prefix, failuresKept)
        self._keycards = RedisKeycards(
            self._connection, self._prefix, self.clock, self._write, self.url.channel
        )
        self._revocations = RedisRevocations(
            self._connection, self.url, self.clock, tokensWhenDown, keyEncryptionKey
        )
        self.keyEncryptionKey = keyEncryptionKey
        self._connection.start()

    def __repr__(self) -> str:
        return f"<RedisStore {self.url}>"

    @classmethod
    def open(
        cls, url: RedisURL | str, reactor: Any, timeout: float = 10.0, **kw: Any
    ) -> Deferred[RedisStore]:
        """
        Connect, and fire once Redis answers and, with a key-encryption
        key, once the secrets are wrapped under it.

        @raise StoreUnavailable: (as a failure) if it does not within
            C{timeout} seconds.
        @raise WrongKeyEncryptionKey: (as a failure) if the secrets are
            wrapped under another key-encryption key.
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
        if self.keyEncryptionKey is not None:
            try:
                await self._revocations.wrapped()
            except BaseException:
                await self.close()
                raise
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

    def storeUp(self) -> bool:
        """
        See L{IStoreHealth.storeUp}: whether a connection to Redis is up.
        """
        return self._connection.up

    def writesQueued(self) -> int:
        """
        See L{IStoreHealth.writesQueued}: the writes queued while Redis is
        unreachable (see L{WriteQueue}).
        """
        return len(self._queue)

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
        self,
        record: IssuedKeycard,
        maxPerAvatar: int | None,
        poolSize: int | None,
        seatsPerAvatar: int | None = None,
        ticketId: str | None = None,
    ) -> Deferred[None]:
        return self._keycards.addWithin(
            record, maxPerAvatar, poolSize, seatsPerAvatar, ticketId
        )

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

    # Seat queues: see RedisKeycards.

    def joinQueue(
        self, waiter: SeatWaiter, when: float, limits: QueueLimits
    ) -> Deferred[tuple[int, int]]:
        return self._keycards.joinQueue(waiter, when, limits)

    def renewPlace(
        self, pool: str, ticketId: str, lapses: float, when: float
    ) -> Deferred[tuple[int, int] | None]:
        return self._keycards.renewPlace(pool, ticketId, lapses, when)

    def queuePlace(self, pool: str, ticketId: str, when: float) -> Deferred[int | None]:
        return self._keycards.queuePlace(pool, ticketId, when)

    def leaveQueue(self, pool: str, ticketId: str) -> Deferred[bool]:
        return self._keycards.leaveQueue(pool, ticketId)

    def seatsTaken(self, pool: str, when: float) -> Deferred[int]:
        return self._keycards.seatsTaken(pool, when)

    def waiters(self, pool: str, when: float) -> Deferred[list[SeatWaiter]]:
        return self._keycards.waiters(pool, when)

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

    def rewrapSecrets(self, new: KeyEncryptionKey) -> Deferred[None]:
        """
        Wrap the keyring and the mock secret under C{new} in place of this
        store's key-encryption key, as one change; this store uses C{new}
        from then on.  The keyring's version stays (its keys are the same),
        so bouncers that loaded it keep it; any process reading the
        secrets again needs C{new}.

        @raise WrongKeyEncryptionKey: (as a failure) if they are not
            wrapped under this store's key.
        """
        d = Deferred.fromCoroutine(self._revocations.rewrap(new))

        def done(_: object) -> None:
            self.keyEncryptionKey = new

        return d.addCallback(done)

    def mockSecret(self) -> Deferred[bytes]:
        return self._revocations.mockSecret()

    # Failed logins

    def shareThrottle(
        self, source: str, events: Sequence[ThrottleEvent], cursor: int, limit: int
    ) -> Deferred[ThrottleShare]:
        return self._throttle.share(source, events, cursor, limit)

    def flushFailures(self, before: float) -> Deferred[int]:
        return self._throttle.flush(before)

    # Changes

    def subscribe(self, callback: Callable[[str], object]) -> Callable[[], None]:
        return self._subscribers.subscribe(callback)
