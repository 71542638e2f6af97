"""
Revoking keycards: the bouncer's administrative side.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from twisted_keycard.bouncer._composite import CompositePolicy
from twisted_keycard.bouncer._policy import TokenPolicy
from twisted_keycard.bouncer._revocations import (
    AVATAR,
    REQUESTER,
    heldBy,
    revocationsFor,
    withChildren,
)
from twisted_keycard.store._interfaces import IKeycardStore, IRevocationStore
from twisted_keycard.store._records import IssuedKeycard, Revocation


class BouncerRevocation:
    """
    Mixin of L{twisted_keycard.bouncer.Bouncer}: revocation.
    """

    log: Logger
    store: IKeycardStore
    clock: IReactorTime
    duration: float
    tokens: TokenPolicy | None
    held: dict[str, IssuedKeycard]
    policy: CompositePolicy | None
    _expire: Callable[[Sequence[str]], Coroutine[Any, Any, int]]

    def revokeKeycardIds(
        self, keycardIds: Sequence[str], reason: str = ""
    ) -> Deferred[int]:
        """
        Revoke keycards, and the keycards issued for their tokens: their
        tokens are refused by every bouncer sharing the store until they
        would have expired, and the clients holding them are dropped.

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
        mark = Revocation(kind + name, now + self._tokenLifetime(), now, reason)
        return await self._revoke([], records, [mark], reason)

    def _tokenLifetime(self) -> float:
        skew = self.tokens.skew if self.tokens is not None else 0.0
        return self.duration + skew

    async def _revoke(
        self,
        keycardIds: Sequence[str],
        records: list[IssuedKeycard],
        marks: list[Revocation],
        reason: str,
    ) -> int:
        if not IRevocationStore.providedBy(self.store):
            raise ValueError("this bouncer's store keeps no revocations")
        family = await withChildren(self.store, records)
        now = self.clock.seconds()
        revocations = revocationsFor(
            keycardIds, family, now, self._tokenLifetime(), reason
        )
        await self.store.revoke(revocations + marks)
        ids = [r.keycardId for r in revocations]
        self.log.info(
            "revoked {count} keycard(s) {marks}: {reason}",
            count=len(ids),
            marks=[m.keycardId for m in marks],
            reason=reason,
        )
        await self._expire(ids)
        return len(family)

    def reevaluate(
        self, revoked: Mapping[str, Collection[str]] | None = None
    ) -> Deferred[int]:
        """
        Evaluate the policy again for every keycard this bouncer holds, as
        when an algorithm revokes some of them (C{revoked} maps an
        algorithm's name to the keycard ids it revokes) or its rules changed;
        expire the keycards for which the whole expression is now false.

        @return: a L{Deferred} firing with the number expired.
        """
        policy = self.policy
        if policy is None:
            return succeed(0)
        revoked = revoked or {}
        doomed = [
            keycardId
            for keycardId, record in self.held.items()
            if not policy.allows(
                record, [name for name, ids in revoked.items() if keycardId in ids]
            )
        ]
        return ensureDeferred(self._expire(doomed))

    async def _revokedElsewhere(self, revocations: list[Revocation]) -> None:
        hit = heldBy(self.held, revocations)
        if hit:
            await self._expire(hit)
