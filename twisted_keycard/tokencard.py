"""
The token keycard: log in again with a token issued earlier, on any bouncer
that shares the keyring and the stores.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from twisted_keycard.error import ProtocolError
from twisted_keycard.keycard._address import normalizeAddress
from twisted_keycard.keycard._interfaces import IAnswerer, IChallenger, IExchange
from twisted_keycard.keycard._keycard import (
    TOKEN_LENGTH,
    Keycard,
    registerKeycard,
    wireField,
)
from twisted_keycard.store._interfaces import IRevocationStore
from twisted_keycard.tokens._format import (
    BadSignature,
    MalformedToken,
    TokenClaims,
    keycardIdOf,
    verify,
)
from twisted_keycard.tokens._holder import KeyringHolder
from twisted_keycard.tokens._keyring import UnknownKey

#: Seconds of clock difference between bouncers tolerated at expiry.
DEFAULT_SKEW = 5.0


@registerKeycard
@attrs.define(slots=False, eq=False, kw_only=True)
class TokenKeycard(Keycard):
    """
    A keycard that presents a token issued with an earlier keycard.

    @ivar presented: the token.
    """

    keycardType = "twisted_keycard.token"

    presented: str | None = wireField(str, TOKEN_LENGTH, setBy="client")


@implementer(IAnswerer)
@attrs.define
class TokenAnswerer:
    """
    The client side: presents a saved token.  There is no challenge.
    """

    token: str = attrs.field(repr=False)
    keycardClass = TokenKeycard

    def start(self) -> Keycard:
        return TokenKeycard(presented=self.token)

    def answer(self, keycard: Keycard) -> Keycard:
        raise ProtocolError("a token keycard has no challenge to answer")

    def finish(self, keycard: Keycard) -> None:
        """
        Nothing to check: the server's proof is the new keycard it issued.
        """


class ITokenExchange(IExchange):
    """
    A presented token, waiting for L{TokenChecker}.
    """


@implementer(ITokenExchange)
@attrs.define
class TokenExchange:
    """
    The bouncer's side of a token login.

    @ivar parentId: after a successful check, the keycard id of the token,
        which becomes the parent of the new keycard.
    """

    token: str = attrs.field(repr=False)
    address: str | None
    parentId: str | None = None
    claims: TokenClaims | None = None

    def challenge(self, keycard: Keycard) -> bool:
        return False

    def answer(self, keycard: Keycard) -> None:
        raise ProtocolError("a token keycard has no challenge to answer")

    def conclude(self, keycard: Keycard) -> None:
        """
        The new token the bouncer issues is the proof.
        """


@implementer(ICredentialsChecker, IChallenger)
@attrs.define
class TokenChecker:
    """
    Checks presented tokens, in this order: revoked (by keycard id), well
    formed, key known and in its grace, MAC, revoked (by parent, avatar or
    requester, for tokens issued before the revocation), expiry (with
    C{skew}), address binding.
    """

    revocations: IRevocationStore
    keys: KeyringHolder
    clock: IReactorTime
    skew: float = DEFAULT_SKEW
    credentialInterfaces = (ITokenExchange,)
    keycardClasses = (TokenKeycard,)
    log = Logger()

    def prime(self, keycard: Keycard) -> Deferred[IExchange]:
        if not isinstance(keycard, TokenKeycard) or keycard.presented is None:
            raise ProtocolError("no token presented")
        return succeed(TokenExchange(keycard.presented, keycard.address))

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, exchange: TokenExchange) -> str:
        try:
            claims = await self._verify(exchange)
        except (MalformedToken, UnknownKey, BadSignature, ProtocolError) as e:
            raise ProtocolError(str(e)) from None
        exchange.parentId = claims.keycardId
        exchange.claims = claims
        return claims.avatarId

    async def _verify(self, exchange: TokenExchange) -> TokenClaims:
        token = exchange.token
        keycardId = keycardIdOf(token)
        if await self.revocations.isRevoked(keycardId):
            raise ProtocolError("revoked token")
        now = self.clock.seconds()
        keyring = await self.keys.current()
        try:
            claims = verify(token, keyring, now, keycardId)
        except UnknownKey as e:
            if e.kid is None:
                raise
            # Another bouncer may have rotated the keys: reload, rate-limited.
            keyring = await self.keys.reloadFor(e.kid)
            claims = verify(token, keyring, now, keycardId)
        await self._checkMarks(claims)
        if now > claims.expires + self.skew:
            raise ProtocolError("expired token")
        if claims.address is not None and (
            exchange.address is None
            or normalizeAddress(claims.address) != normalizeAddress(exchange.address)
        ):
            raise ProtocolError("token presented from another address")
        return claims

    async def _checkMarks(self, claims: TokenClaims) -> None:
        keys = [f"avatar:{claims.avatarId}"]
        if claims.requesterName is not None:
            keys.append(f"requester:{claims.requesterName}")
        if claims.parentId is not None:
            keys.append(claims.parentId)
        for revocation in await self.revocations.revocationsOf(keys):
            if revocation.keycardId == claims.parentId:
                raise ProtocolError("parent keycard revoked")
            if revocation.revokedAt >= claims.issued:
                raise ProtocolError(f"revoked by {revocation.keycardId.split(':')[0]}")
