"""
Issuing a keycard once its exchange succeeded: the record kept in the
store, the policy and quota it must satisfy, and its signed token.
"""

from __future__ import annotations

import attrs
from twisted.internet.interfaces import IReactorTime

from twisted_keycard.bouncer._composite import CompositePolicy
from twisted_keycard.bouncer._lease import Lease
from twisted_keycard.bouncer._policy import Quota, TokenPolicy
from twisted_keycard.bouncer._refusal import Refusal
from twisted_keycard.keycard._address import normalizeAddress
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
    @ivar lease: the running bouncer's lease, recorded in the keycards it
        issues.
    """

    store: IKeycardStore
    clock: IReactorTime
    bouncerName: str
    duration: float
    tokens: TokenPolicy | None = None
    keys: KeyringHolder | None = None
    quota: Quota | None = None
    policy: CompositePolicy | None = None
    lease: Lease | None = None

    async def issue(
        self, keycard: Keycard, avatarId: str, parent: TokenClaims | None = None
    ) -> tuple[IssuedKeycard, str | None]:
        """
        Record C{keycard} (its id, type, address and requester set) as
        issued to C{avatarId}: in the family of C{parent}, the token it was
        issued for, or starting its own family.

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
            parentId=None if parent is None else parent.keycardId,
            seatPool=quota.seatPool if quota is not None else None,
            familyId=keycard.id if parent is None else parent.family,
            holderId=None if self.lease is None else self.lease.heldBy,
        )
        if self.policy is not None and not self.policy.allows(record):
            raise Refusal(f"refused by the policy {self.policy.text!r}", "policy")
        token = await self._token(record, parent)
        if quota is None:
            await self.store.add(record)
        else:
            await self.store.addWithin(record, quota.maxPerAvatar, quota.seats)
        return record, token

    async def _token(
        self, record: IssuedKeycard, parent: TokenClaims | None
    ) -> str | None:
        tokens = self.tokens
        if tokens is None or self.keys is None:
            return None
        keyring = await self.keys.current()
        familyStart = record.issued if parent is None else parent.familyStart
        # The requester it came through first, then the configured ones.
        audience = [] if record.requesterName is None else [record.requesterName]
        audience += sorted(tokens.audiences.difference(audience))
        claims = TokenClaims(
            keycardId=record.keycardId,
            avatarId=record.avatarId,
            issued=record.issued,
            # A chain of token logins ends with its family's lifetime.
            expires=min(record.expires, familyStart + tokens.maxFamilyLifetime),
            bouncerName=self.bouncerName,
            requesterName=record.requesterName,
            address=(
                normalizeAddress(record.address)
                if tokens.bindAddress and record.address is not None
                else None
            ),
            parentId=record.parentId,
            # A child keeps its family's claims, which include this
            # bouncer's: the token checker refused the parent otherwise.
            claims=tokens.claims if parent is None else parent.claims,
            familyId=record.familyId,
            familyIssued=familyStart,
            audience=tuple(audience),
        )
        return sign(claims, keyring.signing)
