"""
Revoking keycards: what to write in the revocation store so that every
bouncer sharing it refuses them (and the keycards issued for their tokens)
until they would have expired anyway.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from twisted_keycard._printable import printable, printables
from twisted_keycard.store._interfaces import IKeycardStore, IRevocationStore
from twisted_keycard.store._records import IssuedKeycard, Revocation

#: Keycards one revocation may reach through parents and children, at most.
MAX_FAMILY = 10_000

#: Prefixes of the marks that revoke by avatar and by requester.
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


async def _nobodyHolds(keycardIds: list[str]) -> None:
    """
    The default of L{Revoker.onRevoked}: no keycard is held here.
    """


class Revoker:
    """
    Revokes keycards in a store that keeps both issued keycards and
    revocations.  A bouncer uses one and drops the clients of what it
    revoked; the C{keycard revoke} command uses one on its own.
    """

    log = Logger()

    def __init__(
        self,
        store: IKeycardStore,
        clock: IReactorTime,
        tokenLifetime: float,
        onRevoked: Callable[[list[str]], Awaitable[object]] = _nobodyHolds,
    ) -> None:
        """
        @param store: must also provide L{IRevocationStore}.
        @param tokenLifetime: the longest a token issued now could live
            (duration and clock skew): how long to keep the revocation of a
            keycard with no record.
        @param onRevoked: called with the ids revoked, once they are durable.
        @raise ValueError: if the store keeps no revocations.
        """
        if not IRevocationStore.providedBy(store):
            raise ValueError("this store keeps no revocations")
        self.store = store
        self.clock = clock
        self.tokenLifetime = tokenLifetime
        self.onRevoked = onRevoked

    def revokeKeycardIds(
        self, keycardIds: Sequence[str], reason: str = ""
    ) -> Deferred[int]:
        """
        Revoke keycards, and the keycards issued for their tokens.

        @return: a L{Deferred} firing, once the revocation is durable, with
            the number of issued keycards on record that were revoked.
        """
        return Deferred.fromCoroutine(self._revokeIds(keycardIds, reason))

    async def _revokeIds(self, keycardIds: Sequence[str], reason: str) -> int:
        records = [r for r in [await self.store.get(k) for k in keycardIds] if r]
        return await self._revoke(keycardIds, records, [], reason)

    def revokeAvatar(self, avatarId: str, reason: str = "") -> Deferred[int]:
        """
        Revoke every keycard and token issued to C{avatarId} until now.

        @return: as L{revokeKeycardIds}.
        """
        return Deferred.fromCoroutine(self._revokeBy(AVATAR, avatarId, reason))

    def revokeRequester(self, requesterName: str, reason: str = "") -> Deferred[int]:
        """
        Revoke every keycard and token issued through requester
        C{requesterName} until now.

        @return: as L{revokeKeycardIds}.
        """
        return Deferred.fromCoroutine(self._revokeBy(REQUESTER, requesterName, reason))

    async def _revokeBy(self, kind: str, name: str, reason: str) -> int:
        if kind == AVATAR:
            records = await self.store.byAvatar(name)
        else:
            records = await self.store.byRequester(name)
        now = self.clock.seconds()
        mark = Revocation(kind + name, now + self.tokenLifetime, now, reason)
        return await self._revoke([], records, [mark], reason)

    async def _revoke(
        self,
        keycardIds: Sequence[str],
        records: list[IssuedKeycard],
        marks: list[Revocation],
        reason: str,
    ) -> int:
        store = self.store
        assert IRevocationStore.providedBy(store)
        family = await withChildren(store, records)
        now = self.clock.seconds()
        revocations = revocationsFor(
            keycardIds, family, now, self.tokenLifetime, reason
        )
        await store.revoke(revocations + marks)
        ids = [r.keycardId for r in revocations]
        self.log.info(
            "revoked {count} keycard(s) {marks}: {reason}",
            event="keycard.revoked",
            count=len(ids),
            marks=printables(m.keycardId for m in marks),
            reason=printable(reason),
        )
        await self.onRevoked(ids)
        return len(family)
