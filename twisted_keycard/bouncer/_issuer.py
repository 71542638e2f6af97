"""
Issuing a keycard once its exchange succeeded: the record kept in the
store, the policy and quota it must satisfy, and its signed token.
"""

from __future__ import annotations

import attrs
from twisted.internet.interfaces import IReactorTime

from twisted_keycard.bouncer._composite import CompositePolicy
from twisted_keycard.bouncer._policy import Quota, TokenPolicy
from twisted_keycard.bouncer._refusal import Refusal
from twisted_keycard.keycard._keycard import Keycard
from twisted_keycard.store._interfaces import IKeycardStore
from twisted_keycard.store._records import IssuedKeycard
from twisted_keycard.tokens._format import TokenClaims, sign
from twisted_keycard.tokens._holder import KeyringHolder


@attrs.define
class Issuer:
    """
    Makes and records the issued keycard for a successful exchange.

    @ivar keys: the keyring to sign tokens with, when C{tokens} is set.
    """

    store: IKeycardStore
    clock: IReactorTime
    bouncerName: str
    duration: float
    tokens: TokenPolicy | None = None
    keys: KeyringHolder | None = None
    quota: Quota | None = None
    policy: CompositePolicy | None = None

    async def issue(
        self, keycard: Keycard, avatarId: str, parentId: str | None
    ) -> tuple[IssuedKeycard, str | None]:
        """
        Record C{keycard} (its id, type, address and requester set) as
        issued to C{avatarId}.

        @return: the record and the token, if tokens are issued.
        @raise Refusal: if the policy refuses it.
        @raise twisted_keycard.error.QuotaExceeded: if no seat is left.
        """
        assert keycard.id is not None
        now = self.clock.seconds()
        quota = self.quota
        record = IssuedKeycard(
            keycardId=keycard.id,
            avatarId=avatarId,
            requesterName=keycard.requesterName,
            bouncerName=self.bouncerName,
            keycardType=keycard.keycardType,
            address=keycard.address,
            issued=now,
            duration=self.duration,
            expires=now + self.duration,
            parentId=parentId,
            seatPool=quota.seatPool if quota is not None else None,
        )
        if self.policy is not None and not self.policy.allows(record):
            raise Refusal(f"refused by the policy {self.policy.text!r}", "policy")
        token = await self._token(record)
        if quota is None:
            await self.store.add(record)
        else:
            await self.store.addWithin(record, quota.maxPerAvatar, quota.seats)
        return record, token

    async def _token(self, record: IssuedKeycard) -> str | None:
        if self.tokens is None or self.keys is None:
            return None
        keyring = await self.keys.current()
        claims = TokenClaims(
            keycardId=record.keycardId,
            avatarId=record.avatarId,
            issued=record.issued,
            expires=record.expires,
            bouncerName=self.bouncerName,
            requesterName=record.requesterName,
            address=record.address if self.tokens.bindAddress else None,
            parentId=record.parentId,
            claims=self.tokens.claims,
        )
        return sign(claims, keyring.signing)
