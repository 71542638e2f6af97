"""
The token keycard: log in again with a token issued earlier, on any bouncer
that shares the keyring and the stores.
"""

from __future__ import annotations

from collections.abc import Mapping
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

#: Seconds a family of tokens lives after its password login, by default.
DEFAULT_MAX_FAMILY_LIFETIME = 24 * 3600.0

#: The prefix of the marks that revoke a whole family of tokens.
FAMILY = "family:"


@registerKeycard
@attrs.define(slots=False, eq=False, kw_only=True)
class TokenKeycard(Keycard):
    """
    A keycard that presents a token issued with an earlier keycard.  Whoever
    reads it can present the token too, so it is a C{bearer} keycard: never
    sent over TLS whose server the client did not verify.

    @ivar presented: the token.
    """

    keycardType = "twisted_keycard.token"
    bearer = True

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

    @ivar address: the client's address, as the requester recorded it.
    @ivar requesterName: the requester the token was presented through.
    @ivar parentToken: after a successful check, what the token says: its
        keycard becomes the parent of the new keycard, in its family.
    """

    token: str = attrs.field(repr=False)
    address: str | None
    requesterName: str | None = None
    parentToken: TokenClaims | None = None

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
    formed, key known and in its grace, MAC, revoked (by parent or family,
    or by avatar or requester for tokens issued before the revocation, in
    one look-up), expiry (with C{skew}), family past C{maxFamilyLifetime},
    audience (the requester it is presented through), address binding,
    claims.

    @ivar claims: the claims every token must carry, with these values (a
        bouncer's L{TokenPolicy.claims<twisted_keycard.bouncer.TokenPolicy>}):
        a token that lacks one, or has another value, is refused.
    """

    revocations: IRevocationStore
    keys: KeyringHolder
    clock: IReactorTime
    skew: float = DEFAULT_SKEW
    maxFamilyLifetime: float = DEFAULT_MAX_FAMILY_LIFETIME
    claims: Mapping[str, str] = attrs.field(factory=dict)
    credentialInterfaces = (ITokenExchange,)
    keycardClasses = (TokenKeycard,)
    log = Logger()

    def prime(self, keycard: Keycard) -> Deferred[IExchange]:
        if not isinstance(keycard, TokenKeycard) or keycard.presented is None:
            raise ProtocolError("no token presented")
        return succeed(
            TokenExchange(keycard.presented, keycard.address, keycard.requesterName)
        )

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, exchange: TokenExchange) -> str:
        try:
            claims = await self._verify(exchange)
        except (MalformedToken, UnknownKey, BadSignature, ProtocolError) as e:
            raise ProtocolError(str(e)) from None
        exchange.parentToken = claims
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
        if now >= claims.familyStart + self.maxFamilyLifetime:
            raise ProtocolError("token family past its lifetime")
        if not self._forRequester(claims, exchange.requesterName):
            raise ProtocolError("token not for this requester")
        if claims.address is not None and (
            exchange.address is None
            or normalizeAddress(claims.address) != normalizeAddress(exchange.address)
        ):
            raise ProtocolError("token presented from another address")
        if any(claims.claims.get(k) != v for k, v in self.claims.items()):
            raise ProtocolError("token claims differ from this bouncer's")
        return claims

    @staticmethod
    def _forRequester(claims: TokenClaims, requesterName: str | None) -> bool:
        """
        Whether a token may be presented through C{requesterName}: one of
        its audiences, or no requester for a token that has none.
        """
        if claims.audiences:
            return requesterName in claims.audiences
        return requesterName is None

    async def _checkMarks(self, claims: TokenClaims) -> None:
        family = FAMILY + claims.family
        keys = [f"avatar:{claims.avatarId}", family]
        if claims.requesterName is not None:
            keys.append(f"requester:{claims.requesterName}")
        if claims.parentId is not None:
            keys.append(claims.parentId)
        for revocation in await self.revocations.revocationsOf(keys):
            if revocation.keycardId == claims.parentId:
                raise ProtocolError("parent keycard revoked")
            if revocation.keycardId == family:
                # Whenever the token was issued: the family is stolen.
                raise ProtocolError("token family revoked")
            if revocation.revokedAt >= claims.issued:
                raise ProtocolError(f"revoked by {revocation.keycardId.split(':')[0]}")
