"""
The keycards a bouncer issued that clients hold: their records, one timer
for the earliest expiry, the requesters to tell when they end, and the
lease under which a running bouncer holds them, so that the seats of a
killed bouncer are freed.
"""

from __future__ import annotations

import heapq
import secrets
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from twisted_keycard._printable import printable, printables
from twisted_keycard.bouncer._interfaces import IRequester
from twisted_keycard.bouncer._revocation import AVATAR, REQUESTER
from twisted_keycard.store import (
    IKeycardStore,
    ILeaseStore,
    IssuedKeycard,
    Revocation,
)
from twisted_keycard.tokens import FAMILY

#: Rebuild the heap when it holds this many times more entries than live
#: timers (renewed and cancelled timers leave stale entries behind).
_STALE_FACTOR = 2
_STALE_SLACK = 64


@attrs.define
class ExpiryTimers:
    """
    Calls C{expire} with a list of ids whose time has come.

    @ivar clock: the reactor's time.
    @ivar expire: called with the ids that expired at one time.
    """

    clock: IReactorTime
    expire: Callable[[list[str]], object]
    _when: dict[str, float] = attrs.field(factory=dict)
    _heap: list[tuple[float, str]] = attrs.field(factory=list)
    _call: IDelayedCall | None = None
    _armedFor: float | None = None

    def __len__(self) -> int:
        return len(self._when)

    def __contains__(self, keycardId: object) -> bool:
        return keycardId in self._when

    def schedule(self, keycardId: str, when: float) -> None:
        """
        Expire C{keycardId} at POSIX time C{when}, replacing any earlier
        schedule for it.
        """
        self._when[keycardId] = when
        heapq.heappush(self._heap, (when, keycardId))
        if len(self._heap) > _STALE_FACTOR * len(self._when) + _STALE_SLACK:
            self._heap = [(w, k) for k, w in self._when.items()]
            heapq.heapify(self._heap)
        self._arm()

    def cancel(self, keycardId: str) -> bool:
        """
        Forget the timer of C{keycardId}.

        @return: whether it had one.
        """
        found = self._when.pop(keycardId, None) is not None
        if not self._when:
            self._heap.clear()
            self._arm()
        return found

    def stop(self) -> None:
        """
        Cancel every timer; nothing expires after this.
        """
        self._when.clear()
        self._heap.clear()
        self._arm()

    def _arm(self) -> None:
        heap = self._heap
        while heap and self._when.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        first = heap[0][0] if heap else None
        if self._call is not None:
            if first == self._armedFor:
                return
            self._call.cancel()
            self._call = None
        self._armedFor = first
        if first is not None:
            delay = max(0.0, first - self.clock.seconds())
            self._call = self.clock.callLater(delay, self._fire)

    def _fire(self) -> None:
        self._call = None
        self._armedFor = None
        now = self.clock.seconds()
        due: list[str] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, keycardId = heapq.heappop(heap)
            if self._when.get(keycardId) == when:
                del self._when[keycardId]
                due.append(keycardId)
        self._arm()
        if due:
            self.expire(due)


def newHolderId(bouncerName: str) -> str:
    """
    A lease id for one bouncer instance: its name, for the operator, and
    randomness, so that two processes (or a restart) never share one.
    """
    return f"{bouncerName}:{secrets.token_urlsafe(12)}"


@attrs.define
class Lease:
    """
    The lease, in an L{ILeaseStore}, under which a bouncer holds the
    keycards it issues or adopts while it runs.  Each renewal extends it by
    C{leaseTime} and releases the keycards of other bouncers' leases that
    ran out.

    @ivar holderId: the lease's id, unique to this bouncer instance.
    @ivar holding: the ids of the keycards held under the lease.
    @ivar onLost: called with those ids when the lease was lost (this
        bouncer stalled past it and another released its keycards, whose
        seats may be taken again): their clients must be dropped.
    @ivar active: whether the lease was taken.
    @ivar renewedAt: when it was last taken or extended, if it was.
    @ivar dead: the leases of earlier runs known to be dead, whose own
        clients' keycards are released at the next renewal (see
        L{releaseDead}).
    @ivar deadRequesters: the requester names through which those runs'
        own clients logged in.
    @ivar releaseRuns: releases the keycards held under the given leases
        and issued through the given requester names (see
        L{HeldKeycards.releaseRuns}), answering how many.
    """

    store: ILeaseStore
    clock: IReactorTime
    holderId: str
    leaseTime: float
    holding: Callable[[], Collection[str]]
    onLost: Callable[[list[str]], Awaitable[object]]
    releaseRuns: Callable[[list[str], frozenset[str]], Awaitable[int]] | None = None
    active: bool = False
    renewedAt: float | None = None
    dead: list[str] = attrs.field(factory=list)
    deadRequesters: frozenset[str] = frozenset()
    log = Logger()

    @property
    def heldBy(self) -> str | None:
        """
        The lease id to record in keycards held from now on, once taken.
        """
        return self.holderId if self.active else None

    def releaseDead(
        self, holderIds: Iterable[str], requesterNames: Iterable[str]
    ) -> None:
        """
        Release, at the next renewal (the first, when called before the
        bouncer starts), the keycards that earlier runs of this bouncer,
        known to be dead (a process killed, whose lock on its lease's file
        was free), issued through C{requesterNames}: the names of its own
        faces, whose clients' connections ended with the process.  Their
        seats would otherwise stay taken until those leases run out.  The
        keycards those runs issued through remote requesters stay under
        their lease until it runs out, so that a requester that reconnects
        meanwhile adopts them (see L{HeldKeycards.adopt}).
        """
        self.dead.extend(h for h in holderIds if h != self.holderId)
        self.deadRequesters |= frozenset(requesterNames)

    async def renew(self) -> int:
        """
        Take or extend the lease, release the keycards of dead runs' own
        clients, then those of lapsed leases.

        @return: how many keycards were released.
        """
        held = list(self.holding())
        now = self.clock.seconds()
        onRecord = await self.store.renewLease(self.holderId, now, now + self.leaseTime)
        if self.active and not onRecord and held:
            self.log.error(
                "lease {holderId} ran out and its keycards were released:"
                " dropping their {count} client(s)",
                holderId=printable(self.holderId),
                count=len(held),
                event="lease.lost",
            )
            await self.onLost(held)
        self.active = True
        self.renewedAt = now
        dead = list(self.dead)
        ofDead = 0
        if dead and self.releaseRuns is not None:
            ofDead = await self.releaseRuns(dead, self.deadRequesters)
        # Forgotten once released: a renewal that failed retries at the next.
        del self.dead[: len(dead)]
        released = ofDead + await self.store.releaseLapsed(now)
        if released:
            runs = ", ".join(printables(dead))
            self.log.info(
                "released {count} keycard(s) held under leases that ran out{ofDead}",
                count=released,
                ofDead=f" or by dead runs of this bouncer ({runs})" if dead else "",
                deadHolderIds=printables(dead),
                event="lease.released",
            )
        return released


class HeldKeycards:
    """
    Issued keycards that a client holds, by id.

    Each has a timer for its expiry; when it ends (by time, removal,
    revocation or a requester gone silent) the record leaves the store and
    the requester that holds it is told, so that it drops the client.

    @ivar records: the held keycards' records, by keycard id.
    """

    log = Logger()

    def __init__(
        self,
        store: IKeycardStore,
        clock: IReactorTime,
        *,
        keepReleased: bool,
        leaseId: str | None = None,
        leaseTime: float = 0.0,
    ) -> None:
        """
        @param keepReleased: on removal, keep the store's record (marked as
            no longer held) rather than delete it, because its token stays
            valid and the record says which avatar it belongs to.
        @param leaseId: the id of the lease under which the running bouncer
            holds its keycards, in a store that keeps leases (see
            L{ILeaseStore}); C{None} for none.
        @param leaseTime: how long the lease lasts past each renewal.
        """
        self.store = store
        self.clock = clock
        self.keepReleased = keepReleased
        #: The running bouncer's lease, under which issued and adopted
        #: keycards are held.
        self.lease: Lease | None = None
        if leaseId is not None and ILeaseStore.providedBy(store):
            self.lease = Lease(
                store,
                clock,
                leaseId,
                leaseTime,
                self._underLease,
                self.expire,
                self.releaseRuns,
            )
        self.records: dict[str, IssuedKeycard] = {}
        #: The audience of each keycard issued here (see L{audienceOf}).
        self._audiences: dict[str, tuple[str, ...]] = {}
        self._timers = ExpiryTimers(clock, self._timersExpired)
        self._requesters: dict[str, IRequester] = {}
        self._endObservers: list[Callable[[list[str]], object]] = []

    def _underLease(self) -> list[str]:
        """
        The ids of the keycards held under this bouncer's lease.
        """
        assert self.lease is not None
        holderId = self.lease.holderId
        return [k for k, r in self.records.items() if r.holderId == holderId]

    def registerRequester(self, name: str, requester: IRequester) -> None:
        """
        @raise ValueError: if another requester has that name: the bouncer
            would tell one of them about the other's clients.
        """
        registered = self._requesters.get(name)
        if registered is not None and registered is not requester:
            raise ValueError(f"a requester named {name!r} is registered already")
        self._requesters[name] = requester

    def unregisterRequester(self, name: str) -> None:
        self._requesters.pop(name, None)

    @property
    def requesterNames(self) -> list[str]:
        """
        The names of the requesters registered now.
        """
        return list(self._requesters)

    def addEndObserver(self, observer: Callable[[list[str]], object]) -> None:
        """
        Call C{observer} with the ids of keycards that end here: expired,
        revoked, or removed because their client left.
        """
        self._endObservers.append(observer)

    def removeEndObserver(self, observer: Callable[[list[str]], object]) -> None:
        """
        Stop calling C{observer}.
        """
        if observer in self._endObservers:
            self._endObservers.remove(observer)

    def _ended(self, keycardIds: list[str]) -> None:
        for observer in list(self._endObservers):
            try:
                observer(keycardIds)
            except Exception:
                self.log.failure("an observer of ended keycards failed")

    def hold(
        self, record: IssuedKeycard, audience: tuple[str, ...] | None = None
    ) -> None:
        """
        Hold a keycard until its record's expiry.

        @param audience: for a keycard issued here, the names its token is
            taken through (written in it, or that would be if it had one);
            C{None} for one adopted.
        """
        self.records[record.keycardId] = record
        if audience is not None:
            self._audiences[record.keycardId] = audience
        self._timers.schedule(record.keycardId, record.expires)

    def audienceOf(self, keycardId: str) -> tuple[str, ...]:
        """
        The audience of a held keycard issued here: the names its token is
        taken through.  Empty for one not held, or adopted from another
        bouncer.
        """
        if keycardId not in self.records:
            return ()
        return self._audiences.get(keycardId, ())

    def stop(self) -> None:
        """
        Cancel every timer (the keycards stay in the store).
        """
        self._timers.stop()

    async def remove(self, keycardId: str) -> bool:
        """
        The client left: forget the keycard, and release or delete its
        record.  No line is logged: a login's one audit line is its
        C{login.issued}, and a client's leaving is no decision.

        @return: whether the store had it.
        """
        self._timers.cancel(keycardId)
        self.records.pop(keycardId, None)
        self._audiences.pop(keycardId, None)
        self._ended([keycardId])
        if self.keepReleased:
            record = await self.store.release(keycardId)
        else:
            record = await self.store.remove(keycardId)
        return record is not None

    def _timersExpired(self, keycardIds: list[str]) -> None:
        d = Deferred.fromCoroutine(self.expire(keycardIds))
        d.addErrback(lambda f: self.log.failure("expiring keycards failed", f))

    async def expire(self, keycardIds: Sequence[str]) -> int:
        """
        End these keycards: delete their records and tell the requesters
        that hold them.

        @return: how many of them a client held.
        """
        byRequester: dict[str | None, list[str]] = defaultdict(list)
        # Every removal is asked for at once, so that a store that commits
        # in groups deletes them all in one transaction.
        removals = []
        for keycardId in keycardIds:
            self._timers.cancel(keycardId)
            held = self.records.pop(keycardId, None)
            self._audiences.pop(keycardId, None)
            removals.append((keycardId, held, self.store.remove(keycardId)))
        try:
            for keycardId, held, removal in removals:
                record = await removal
                holder = held if held is not None else record
                if holder is not None and holder.held:
                    byRequester[holder.requesterName].append(keycardId)
        finally:
            for _, _, removal in removals:
                removal.addErrback(lambda f: None)
        self._ended(list(keycardIds))
        for requesterName, ids in byRequester.items():
            self.log.info(
                "{count} keycard(s) expired via {requesterName}: {keycardIds}",
                event="keycard.expired",
                count=len(ids),
                requesterName=printable(requesterName),
                keycardIds=printables(ids),
            )
            requester = self._requesters.get(requesterName or "")
            if requester is None:
                continue
            try:
                await maybeDeferred(requester.expireKeycardIds, ids)
            except Exception:
                self.log.failure(
                    "requester {requesterName} failed to expire keycards",
                    requesterName=printable(requesterName),
                )
        return sum(len(ids) for ids in byRequester.values())

    async def adopt(self, requesterName: str, keycardIds: Iterable[str]) -> int:
        """
        Hold keycards issued through C{requesterName} by another bouncer or
        before a restart, leaving their expiry as it is, and under this
        bouncer's lease: one released when the lease of its bouncer ran out
        (its seat may be taken again) is not adopted.

        @return: how many were adopted.
        """
        adopted = 0
        holderId = None if self.lease is None else self.lease.heldBy
        for keycardId in keycardIds:
            record = await self.store.get(keycardId)
            if record is None or record.requesterName != requesterName:
                continue
            if holderId is not None and record.holderId != holderId:
                assert self.lease is not None
                record = await self.lease.store.holdUnder(keycardId, holderId)
                if record is None:
                    continue
            self.hold(record)
            adopted += 1
        return adopted

    async def releaseRuns(
        self, holderIds: Collection[str], requesterNames: Collection[str]
    ) -> int:
        """
        Release (or delete, without tokens) the keycards held under the
        leases C{holderIds} and issued through C{requesterNames}, as when
        their clients leave: the own clients of runs of this bouncer that
        ended.

        @return: how many the store had.
        """
        released = 0
        for requesterName in sorted(requesterNames):
            for record in await self.store.byRequester(requesterName):
                if not record.held or record.holderId not in holderIds:
                    continue
                if self.keepReleased:
                    gone = await self.store.release(record.keycardId)
                else:
                    gone = await self.store.remove(record.keycardId)
                released += gone is not None
        return released

    async def expireRequester(self, requesterName: str) -> int:
        """
        Expire every keycard issued through C{requesterName}.
        """
        ids = {r.keycardId for r in await self.store.byRequester(requesterName)}
        ids.update(
            k for k, r in self.records.items() if r.requesterName == requesterName
        )
        return await self.expire(sorted(ids))

    async def keepAlive(
        self,
        requesterName: str,
        keycardIds: Iterable[str],
        maxLifetime: float | None,
    ) -> int:
        """
        Renew keycards issued through C{requesterName} by their duration,
        no further than C{maxLifetime} after their issue.

        @return: how many were renewed.
        """
        now = self.clock.seconds()
        renewed = 0
        for keycardId in keycardIds:
            record = await self.store.get(keycardId)
            if record is None or record.requesterName != requesterName:
                continue
            expires = now + record.duration
            if maxLifetime is not None:
                expires = min(expires, record.issued + maxLifetime)
            if expires <= now:
                continue
            renewedRecord = await self.store.renew(keycardId, expires)
            if renewedRecord is not None and keycardId in self.records:
                self.records[keycardId] = renewedRecord
            self._timers.schedule(keycardId, expires)
            renewed += 1
        return renewed

    def hitBy(self, revocations: Iterable[Revocation]) -> list[str]:
        """
        The held ids that C{revocations} reach: by id or family, or by
        avatar or requester for keycards issued before the revocation.
        """
        hit: list[str] = []
        families: dict[str | None, list[str]] | None = None
        for revocation in revocations:
            key = revocation.keycardId
            if key in self.records:
                hit.append(key)
            elif key.startswith(FAMILY):
                if families is None:
                    # One pass over the held keycards for every family mark.
                    families = defaultdict(list)
                    for keycardId, record in self.records.items():
                        families[record.familyId].append(keycardId)
                hit.extend(families.get(key[len(FAMILY) :], ()))
            elif key.startswith((AVATAR, REQUESTER)):
                kind, _, name = key.partition(":")
                for keycardId, record in self.records.items():
                    owner = (
                        record.avatarId
                        if kind + ":" == AVATAR
                        else record.requesterName
                    )
                    if owner == name and record.issued <= revocation.revokedAt:
                        hit.append(keycardId)
        return list(dict.fromkeys(hit))
