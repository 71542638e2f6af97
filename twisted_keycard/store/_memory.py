"""
A store of issued keycards that lives in memory: for one process, and for
tests.  The log of throttle events is kept the same way.
"""

from __future__ import annotations

import bisect
import secrets
from collections.abc import Iterable, Sequence

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from twisted_keycard._mocks import SECRET_BYTES
from twisted_keycard.store._interfaces import (
    IKeycardStore,
    IKeyringStore,
    ILeaseStore,
    IRevocationStore,
    ISeatQueue,
    IssuedKeycard,
    IStoreHealth,
    IThrottleStore,
    QueueLimits,
    Revocation,
    SeatWaiter,
    ThrottleEvent,
    ThrottleShare,
    queueLimitReached,
    queueRefusal,
    seatRefusal,
)
from twisted_keycard.tokens import Keyring


@attrs.define
class MemoryThrottleLog:
    """
    The log of throttle events, in order, each with its sequence number and
    source.
    """

    _entries: list[tuple[int, str, ThrottleEvent]] = attrs.field(factory=list)
    _last: int = 0

    def share(
        self, source: str, events: Sequence[ThrottleEvent], cursor: int, limit: int
    ) -> ThrottleShare:
        entries = self._entries
        for event in events:
            self._last += 1
            entries.append((self._last, source, event))
        if limit <= 0:
            return ThrottleShare([], cursor)
        start = bisect.bisect_right(entries, cursor, key=lambda entry: entry[0])
        read = entries[start : start + limit]
        return ThrottleShare(
            [event for _, writer, event in read if writer != source],
            read[-1][0] if read else max(cursor, 0),
            len(read) == limit,
        )

    def flush(self, before: float) -> int:
        kept = [entry for entry in self._entries if entry[2].at > before]
        forgotten = len(self._entries) - len(kept)
        self._entries = kept
        return forgotten


def _index(index: dict[str, set[str]], key: str | None, keycardId: str) -> None:
    if key is not None:
        index.setdefault(key, set()).add(keycardId)


def _unindex(index: dict[str, set[str]], key: str | None, keycardId: str) -> None:
    if key is None:
        return
    ids = index.get(key)
    if ids is not None:
        ids.discard(keycardId)
        if not ids:
            del index[key]


@implementer(
    IKeycardStore,
    IRevocationStore,
    IKeyringStore,
    IThrottleStore,
    ILeaseStore,
    IStoreHealth,
    ISeatQueue,
)
@attrs.define
class MemoryStore:
    """
    A store of issued keycards, revocations, the keyring, leases and seat
    queues, in dictionaries indexed by avatar, requester, parent, family,
    seat pool and lease.

    Nothing survives the process: use it in tests and where a restart may
    forget every issued keycard and revocation.
    """

    _records: dict[str, IssuedKeycard] = attrs.field(factory=dict)
    _byAvatar: dict[str, set[str]] = attrs.field(factory=dict)
    _byRequester: dict[str, set[str]] = attrs.field(factory=dict)
    _byParent: dict[str, set[str]] = attrs.field(factory=dict)
    _byPool: dict[str, set[str]] = attrs.field(factory=dict)
    _byFamily: dict[str, set[str]] = attrs.field(factory=dict)
    _revoked: dict[str, Revocation] = attrs.field(factory=dict)
    _revocationLog: list[tuple[int, Revocation]] = attrs.field(factory=list)
    _cursor: int = 0
    _keyring: Keyring | None = None
    _keyringVersion: int = 0
    _leases: dict[str, float] = attrs.field(factory=dict)
    _byHolder: dict[str, set[str]] = attrs.field(factory=dict)
    _throttleLog: MemoryThrottleLog = attrs.field(factory=MemoryThrottleLog)
    _mockSecret: bytes | None = attrs.field(default=None, repr=False)
    #: Each pool's waiters by ticket id, in the order they joined.
    _queues: dict[str, dict[str, SeatWaiter]] = attrs.field(factory=dict)

    def _indexes(
        self, record: IssuedKeycard
    ) -> list[tuple[dict[str, set[str]], str | None]]:
        return [
            (self._byAvatar, record.avatarId),
            (self._byRequester, record.requesterName),
            (self._byParent, record.parentId),
            (self._byPool, record.seatPool),
            (self._byFamily, record.familyId),
            (self._byHolder, record.holderId),
        ]

    def storeUp(self) -> bool:
        """
        See L{IStoreHealth.storeUp}: memory always works.
        """
        return True

    def writesQueued(self) -> int:
        """
        See L{IStoreHealth.writesQueued}: every write is done at once.
        """
        return 0

    def add(self, record: IssuedKeycard) -> Deferred[None]:
        if record.keycardId in self._records:
            return fail(KeyError(record.keycardId))
        self._records[record.keycardId] = record
        for index, key in self._indexes(record):
            _index(index, key, record.keycardId)
        return succeed(None)

    def _live(self, index: dict[str, set[str]], key: str, when: float) -> int:
        records = (self._records[i] for i in index.get(key, ()))
        return sum(1 for r in records if r.held and r.expires > when)

    def addWithin(
        self,
        record: IssuedKeycard,
        maxPerAvatar: int | None,
        poolSize: int | None,
        seatsPerAvatar: int | None = None,
        ticketId: str | None = None,
    ) -> Deferred[None]:
        if record.keycardId in self._records:
            return fail(KeyError(record.keycardId))
        when = record.issued
        self.releaseLapsed(when)
        if (
            maxPerAvatar is not None
            and self._live(self._byAvatar, record.avatarId, when) >= maxPerAvatar
        ):
            return fail(seatRefusal("", "avatar"))
        pool = record.seatPool
        if pool is not None:
            waiting = self._waiting(pool, when) if poolSize is not None else {}
            queued = ticketId is not None and ticketId in waiting
            if queued and next(iter(waiting)) != ticketId:
                return fail(seatRefusal(pool, "queued"))
            taken = self._live(self._byPool, pool, when)
            if poolSize is not None and (taken >= poolSize or (waiting and not queued)):
                return fail(seatRefusal(pool, "pool"))
            if seatsPerAvatar is not None:
                seats = (self._records[i] for i in self._byPool.get(pool, ()))
                mine = sum(
                    1
                    for r in seats
                    if r.held and r.expires > when and r.avatarId == record.avatarId
                )
                if mine >= seatsPerAvatar:
                    return fail(seatRefusal(pool, "seats-per-avatar"))
            if queued and ticketId is not None:
                self._leave(pool, ticketId)
        return self.add(record)

    def get(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        return succeed(self._records.get(keycardId))

    def remove(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        record = self._records.pop(keycardId, None)
        if record is not None:
            for index, key in self._indexes(record):
                _unindex(index, key, keycardId)
        return succeed(record)

    def release(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        record = self._records.get(keycardId)
        if record is None:
            return succeed(None)
        _unindex(self._byPool, record.seatPool, keycardId)
        record = attrs.evolve(record, held=False, seatPool=None)
        self._records[keycardId] = record
        return succeed(record)

    def renew(self, keycardId: str, expires: float) -> Deferred[IssuedKeycard | None]:
        record = self._records.get(keycardId)
        if record is None:
            return succeed(None)
        record = attrs.evolve(record, expires=expires)
        self._records[keycardId] = record
        return succeed(record)

    def _select(self, ids: Iterable[str]) -> Deferred[list[IssuedKeycard]]:
        return succeed([self._records[i] for i in sorted(ids)])

    def byAvatar(self, avatarId: str) -> Deferred[list[IssuedKeycard]]:
        return self._select(self._byAvatar.get(avatarId, ()))

    def byRequester(self, requesterName: str) -> Deferred[list[IssuedKeycard]]:
        return self._select(self._byRequester.get(requesterName, ()))

    def byParent(self, parentId: str) -> Deferred[list[IssuedKeycard]]:
        return self._select(self._byParent.get(parentId, ()))

    def byFamily(self, familyId: str) -> Deferred[list[IssuedKeycard]]:
        return self._select(self._byFamily.get(familyId, ()))

    def expiredBefore(self, when: float) -> Deferred[list[IssuedKeycard]]:
        return self._select(k for k, r in self._records.items() if r.expires <= when)

    def flushExpired(self, when: float) -> Deferred[int]:
        expired = [k for k, r in self._records.items() if r.expires <= when]
        for keycardId in expired:
            self.remove(keycardId)
        return succeed(len(expired))

    def count(self) -> Deferred[int]:
        return succeed(len(self._records))

    # Revocations

    def revoke(self, revocations: Sequence[Revocation]) -> Deferred[int]:
        added = 0
        for revocation in revocations:
            known = self._revoked.get(revocation.keycardId)
            if known is None:
                added += 1
            elif known.expires >= revocation.expires:
                continue
            self._revoked[revocation.keycardId] = revocation
            self._cursor += 1
            self._revocationLog.append((self._cursor, revocation))
        return succeed(added)

    def isRevoked(self, keycardId: str) -> Deferred[bool]:
        return succeed(keycardId in self._revoked)

    def revocationsOf(self, keycardIds: Sequence[str]) -> Deferred[list[Revocation]]:
        found = (self._revoked.get(k) for k in keycardIds)
        return succeed([r for r in found if r is not None])

    def revokedSince(
        self, cursor: int, limit: int
    ) -> Deferred[tuple[list[Revocation], int]]:
        log = self._revocationLog
        start = bisect.bisect_right(log, cursor, key=lambda entry: entry[0])
        batch = log[start : start + limit]
        newCursor = batch[-1][0] if batch else max(cursor, 0)
        return succeed(([r for _, r in batch], newCursor))

    def flushRevocations(self, when: float) -> Deferred[int]:
        gone = [k for k, r in self._revoked.items() if r.expires <= when]
        for keycardId in gone:
            del self._revoked[keycardId]
        self._revocationLog = [
            (n, r) for n, r in self._revocationLog if r.keycardId in self._revoked
        ]
        return succeed(len(gone))

    # Failed logins

    def shareThrottle(
        self, source: str, events: Sequence[ThrottleEvent], cursor: int, limit: int
    ) -> Deferred[ThrottleShare]:
        return succeed(self._throttleLog.share(source, events, cursor, limit))

    def flushFailures(self, before: float) -> Deferred[int]:
        return succeed(self._throttleLog.flush(before))

    # Keyring

    def loadKeyring(self) -> Deferred[Keyring | None]:
        return succeed(self._keyring)

    def saveKeyring(self, keyring: Keyring) -> Deferred[None]:
        self._keyring = keyring
        self._keyringVersion += 1
        return succeed(None)

    def keyringVersion(self) -> Deferred[int]:
        return succeed(self._keyringVersion)

    # Leases

    def renewLease(self, holderId: str, when: float, expires: float) -> Deferred[bool]:
        held = holderId in self._leases
        self._leases[holderId] = expires
        return succeed(held)

    def releaseLapsed(self, when: float) -> Deferred[int]:
        released = 0
        for holderId in [h for h, end in self._leases.items() if end <= when]:
            del self._leases[holderId]
            for keycardId in self._byHolder.pop(holderId, set()):
                if self._records[keycardId].held:
                    self.release(keycardId)
                    released += 1
        return succeed(released)

    def holdUnder(
        self, keycardId: str, holderId: str
    ) -> Deferred[IssuedKeycard | None]:
        record = self._records.get(keycardId)
        if record is None or not record.held:
            return succeed(None)
        _unindex(self._byHolder, record.holderId, keycardId)
        record = attrs.evolve(record, holderId=holderId)
        self._records[keycardId] = record
        _index(self._byHolder, holderId, keycardId)
        return succeed(record)

    def mockSecret(self) -> Deferred[bytes]:
        if self._mockSecret is None:
            self._mockSecret = secrets.token_bytes(SECRET_BYTES)
        return succeed(self._mockSecret)

    # Seat queues

    def _waiting(self, pool: str, when: float) -> dict[str, SeatWaiter]:
        """
        C{pool}'s live waiters at C{when}, in order; the lapsed ones are
        forgotten.
        """
        queue = self._queues.get(pool, {})
        for ticketId in [t for t, w in queue.items() if w.lapses <= when]:
            del queue[ticketId]
        if not queue:
            self._queues.pop(pool, None)
        return queue

    def _leave(self, pool: str, ticketId: str) -> bool:
        queue = self._queues.get(pool, {})
        left = queue.pop(ticketId, None) is not None
        if not queue:
            self._queues.pop(pool, None)
        return left

    @staticmethod
    def _place(queue: dict[str, SeatWaiter], ticketId: str) -> int | None:
        for place, queuedId in enumerate(queue, 1):
            if queuedId == ticketId:
                return place
        return None

    def joinQueue(
        self, waiter: SeatWaiter, when: float, limits: QueueLimits
    ) -> Deferred[tuple[int, int]]:
        queue = self._waiting(waiter.pool, when)
        if waiter.ticketId not in queue:
            refused = queueLimitReached(list(queue.values()), waiter, limits)
            if refused is not None:
                return fail(queueRefusal(waiter.pool, refused))
        queue[waiter.ticketId] = waiter
        self._queues[waiter.pool] = queue
        place = self._place(queue, waiter.ticketId)
        assert place is not None
        return succeed((place, len(queue)))

    def renewPlace(
        self, pool: str, ticketId: str, lapses: float, when: float
    ) -> Deferred[tuple[int, int] | None]:
        queue = self._waiting(pool, when)
        waiter = queue.get(ticketId)
        if waiter is None:
            return succeed(None)
        queue[ticketId] = attrs.evolve(waiter, lapses=lapses)
        place = self._place(queue, ticketId)
        assert place is not None
        return succeed((place, len(queue)))

    def queuePlace(self, pool: str, ticketId: str, when: float) -> Deferred[int | None]:
        return succeed(self._place(self._waiting(pool, when), ticketId))

    def leaveQueue(self, pool: str, ticketId: str) -> Deferred[bool]:
        return succeed(self._leave(pool, ticketId))

    def seatsTaken(self, pool: str, when: float) -> Deferred[int]:
        self.releaseLapsed(when)
        return succeed(self._live(self._byPool, pool, when))

    def waiters(self, pool: str, when: float) -> Deferred[list[SeatWaiter]]:
        return succeed(list(self._waiting(pool, when).values()))
