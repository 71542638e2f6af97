"""
The keycards a bouncer issued that clients hold: their records, the timers
that expire them, and the requesters to tell when they end.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from twisted_keycard._printable import printable, printables
from twisted_keycard.bouncer._interfaces import IRequester
from twisted_keycard.bouncer._lease import Lease
from twisted_keycard.bouncer._revoker import AVATAR, REQUESTER
from twisted_keycard.bouncer._timers import ExpiryTimers
from twisted_keycard.store._interfaces import IKeycardStore
from twisted_keycard.store._records import IssuedKeycard, Revocation
from twisted_keycard.tokencard import FAMILY


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
        self, store: IKeycardStore, clock: IReactorTime, *, keepReleased: bool
    ) -> None:
        """
        @param keepReleased: on removal, keep the store's record (marked as
            no longer held) rather than delete it, because its token stays
            valid and the record says which avatar it belongs to.
        """
        self.store = store
        self.clock = clock
        self.keepReleased = keepReleased
        #: The running bouncer's lease, under which adopted keycards are
        #: held; set by the bouncer.
        self.lease: Lease | None = None
        self.records: dict[str, IssuedKeycard] = {}
        self._timers = ExpiryTimers(clock, self._timersExpired)
        self._requesters: dict[str, IRequester] = {}
        self._endObservers: list[Callable[[list[str]], object]] = []

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

    def hold(self, record: IssuedKeycard) -> None:
        """
        Hold a keycard until its record's expiry.
        """
        self.records[record.keycardId] = record
        self._timers.schedule(record.keycardId, record.expires)

    def stop(self) -> None:
        """
        Cancel every timer (the keycards stay in the store).
        """
        self._timers.stop()

    async def remove(self, keycardId: str) -> bool:
        """
        The client left: forget the keycard, and release or delete its
        record.

        @return: whether the store had it.
        """
        self._timers.cancel(keycardId)
        self.records.pop(keycardId, None)
        self._ended([keycardId])
        if self.keepReleased:
            record = await self.store.release(keycardId)
        else:
            record = await self.store.remove(keycardId)
        if record is not None:
            self.log.info(
                "keycard {keycardId} removed",
                event="keycard.removed",
                keycardId=printable(keycardId),
            )
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
