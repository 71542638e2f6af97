"""
Revocation: what to write in the revocation store so that every bouncer
refuses a keycard, its token and its family, and the revocations in force
kept in memory by a running bouncer, so that a check costs no store query.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from twisted_keycard._printable import printable, printables
from twisted_keycard.store import (
    IKeycardStore,
    IRevocationStore,
    IssuedKeycard,
    Revocation,
)
from twisted_keycard.tokens import FAMILY, RevocationMirror

#: Prefixes of the marks that revoke by avatar and by requester.
AVATAR = "avatar:"
REQUESTER = "requester:"


def _ends(record: IssuedKeycard) -> float:
    """
    When a keycard and its token would have expired anyway.
    """
    return max(record.expires, record.issued + record.duration)


def revocationsFor(
    keycardIds: Iterable[str],
    families: dict[str, list[IssuedKeycard]],
    now: float,
    tokenLifetime: float,
    reason: str,
) -> list[Revocation]:
    """
    One revocation per id and one mark per family, each kept until every
    keycard and token it refuses would have expired anyway, and at least
    for the longest a token issued now could live (an id with no record,
    a token issued while the revocation is written).
    """
    byId = {r.keycardId: r for members in families.values() for r in members}
    floor = now + tokenLifetime
    revocations = []
    for keycardId in dict.fromkeys(keycardIds):
        record = byId.get(keycardId)
        expires = floor if record is None else max(floor, _ends(record))
        revocations.append(Revocation(keycardId, expires, now, reason))
    for familyId, members in families.items():
        expires = max([floor, *map(_ends, members)])
        revocations.append(Revocation(FAMILY + familyId, expires, now, reason))
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
        mirror: RevocationMirror | None = None,
    ) -> None:
        """
        @param store: must also provide L{IRevocationStore}.
        @param tokenLifetime: the longest a token issued now could live
            (duration and clock skew): how long to keep the revocation of a
            keycard with no record.
        @param onRevoked: called with the ids revoked, once they are durable.
        @param mirror: the revocations in force of the bouncer this revoker
            works for, given each revocation once it is durable, so that
            the bouncer refuses its tokens at once.
        @raise ValueError: if the store keeps no revocations.
        """
        if not IRevocationStore.providedBy(store):
            raise ValueError("this store keeps no revocations")
        self.store = store
        self.clock = clock
        self.tokenLifetime = tokenLifetime
        self.onRevoked = onRevoked
        self.mirror = mirror

    def revokeKeycardIds(
        self, keycardIds: Sequence[str], reason: str = ""
    ) -> Deferred[int]:
        """
        Revoke keycards and every token of their families (see the module's
        docstring).  An id with no record left still names its children's
        family.

        @return: a L{Deferred} firing, once the revocation is durable, with
            the number of issued keycards on record that were revoked.
        """
        return Deferred.fromCoroutine(self._revokeIds(keycardIds, reason))

    async def _revokeIds(self, keycardIds: Sequence[str], reason: str) -> int:
        records = []
        for keycardId in keycardIds:
            record = await self.store.get(keycardId)
            if record is not None:
                records.append(record)
            else:
                # Its record expired; the children its token made name its
                # family.
                records.extend(await self.store.byParent(keycardId))
        return await self._revoke(keycardIds, records, [], reason)

    def revokeAvatar(self, avatarId: str, reason: str = "") -> Deferred[int]:
        """
        Revoke every keycard and token issued to C{avatarId} until now
        (their families too).

        @return: as L{revokeKeycardIds}.
        """
        return Deferred.fromCoroutine(self._revokeBy(AVATAR, avatarId, reason))

    def revokeRequester(self, requesterName: str, reason: str = "") -> Deferred[int]:
        """
        Revoke every keycard and token issued through requester
        C{requesterName} until now, and their families (whose later members
        may have come through other requesters).

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
        families: dict[str, list[IssuedKeycard]] = {}
        for record in records:
            if record.familyId is not None and record.familyId not in families:
                families[record.familyId] = await store.byFamily(record.familyId)
        now = self.clock.seconds()
        revocations = revocationsFor(
            keycardIds, families, now, self.tokenLifetime, reason
        )
        await store.revoke(revocations + marks)
        if self.mirror is not None:
            self.mirror.update(revocations + marks)
        reached = {r.keycardId: r for r in records}
        for members in families.values():
            reached.update((r.keycardId, r) for r in members)
        ids = list(dict.fromkeys([*keycardIds, *reached]))
        self.log.info(
            "revoked {count} keycard(s) in {families} families {marks}: {reason}",
            event="keycard.revoked",
            count=len(ids),
            families=len(families),
            marks=printables(m.keycardId for m in marks),
            reason=printable(reason),
        )
        await self.onRevoked(ids)
        return len(reached)
