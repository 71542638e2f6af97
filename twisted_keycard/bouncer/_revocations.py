"""
Revocation: what to write in the revocation store when keycards are revoked,
and a follower that tells each bouncer about revocations made by others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from twisted_keycard.store._interfaces import IKeycardStore, IRevocationStore
from twisted_keycard.store._records import IssuedKeycard, Revocation

#: Keycards one revocation may reach through parents and children, at most.
MAX_FAMILY = 10_000

#: Revocations read from the store in one poll, at most.
FOLLOW_BATCH = 1000

AVATAR = "avatar:"
REQUESTER = "requester:"


async def withChildren(
    store: IKeycardStore, records: Iterable[IssuedKeycard]
) -> list[IssuedKeycard]:
    """
    The records and, recursively, the keycards issued for their tokens.
    """
    found: dict[str, IssuedKeycard] = {}
    queue = list(records)
    while queue and len(found) < MAX_FAMILY:
        record = queue.pop()
        if record.keycardId in found:
            continue
        found[record.keycardId] = record
        queue.extend(await store.byParent(record.keycardId))
    return list(found.values())


def revocationsFor(
    keycardIds: Iterable[str],
    records: Iterable[IssuedKeycard],
    now: float,
    tokenLifetime: float,
    reason: str,
) -> list[Revocation]:
    """
    One revocation per id, kept until the keycard and its token would have
    expired anyway; an id with no record (its client left) is kept for the
    longest a token issued now could live.
    """
    byId = {r.keycardId: r for r in records}
    revocations = []
    for keycardId in dict.fromkeys([*keycardIds, *byId]):
        record = byId.get(keycardId)
        if record is None:
            expires = now + tokenLifetime
        else:
            expires = max(record.expires, record.issued + record.duration)
        revocations.append(Revocation(keycardId, expires, now, reason))
    return revocations


def heldBy(held: dict[str, IssuedKeycard], revocations: list[Revocation]) -> list[str]:
    """
    The ids among C{held} that C{revocations} reach: by id, or by avatar or
    requester for keycards issued before the revocation.
    """
    hit: list[str] = []
    for revocation in revocations:
        key = revocation.keycardId
        if key in held:
            hit.append(key)
        elif key.startswith((AVATAR, REQUESTER)):
            kind, _, name = key.partition(":")
            for keycardId, record in held.items():
                owner = (
                    record.avatarId if kind + ":" == AVATAR else record.requesterName
                )
                if owner == name and record.issued <= revocation.revokedAt:
                    hit.append(keycardId)
    return list(dict.fromkeys(hit))


@attrs.define
class RevocationFollower:
    """
    Polls a revocation store for revocations recorded after the last one
    seen (by the store's cursor, a row id for SQLite) and hands them to
    C{onRevoked}.
    """

    store: IRevocationStore
    clock: IReactorTime
    onRevoked: Callable[[list[Revocation]], Awaitable[object]]
    interval: float = 1.0
    cursor: int = 0
    _loop: LoopingCall | None = None
    log = Logger()

    async def catchUp(self) -> None:
        """
        Skip every revocation already recorded: a starting bouncer holds no
        keycard they could concern.
        """
        while True:
            batch, self.cursor = await self.store.revokedSince(
                self.cursor, FOLLOW_BATCH
            )
            if len(batch) < FOLLOW_BATCH:
                return

    async def poll(self) -> int:
        """
        Read and hand over the revocations recorded since the last poll.

        @return: how many were read.
        """
        seen = 0
        while True:
            batch, self.cursor = await self.store.revokedSince(
                self.cursor, FOLLOW_BATCH
            )
            seen += len(batch)
            if batch:
                await self.onRevoked(batch)
            if len(batch) < FOLLOW_BATCH:
                return seen

    def start(self) -> None:
        loop = self._loop = LoopingCall(self._tick)
        loop.clock = self.clock
        loop.start(self.interval, now=False)

    def _tick(self) -> Deferred[None]:
        d = Deferred.fromCoroutine(self.poll())
        d.addErrback(lambda f: self.log.failure("following revocations failed", f))
        return d.addCallback(lambda _: None)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
