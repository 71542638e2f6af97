"""
The token keycard: log in again with a token issued earlier, on any bouncer
that shares the keyring and the stores, in one round trip.  Its checker
verifies the signature, the expiry, the audience and address claims and
the revocations in force.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from twisted_keycard.error import ProtocolError
from twisted_keycard.keycard._exchange import IAnswerer, IChallenger, IExchange
from twisted_keycard.keycard._keycard import (
    TOKEN_LENGTH,
    Keycard,
    normalizeAddress,
    registerKeycard,
    wireField,
)
from twisted_keycard.store._interfaces import IRevocationStore, Revocation
from twisted_keycard.tokens._tokens import (
    BadSignature,
    KeyringHolder,
    MalformedToken,
    TokenClaims,
    UnknownKey,
    keycardIdOf,
    verify,
)

if TYPE_CHECKING:
    from twisted_keycard.bouncer._revocation import RevocationMirror


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

    With a C{mirror} of the revocations in force (a running bouncer's; see
    L{RevocationMirror<twisted_keycard.bouncer._revocation.RevocationMirror>})
    and the keyring loaded, a check is answered at once, with no store
    round trip; otherwise the revocations are read from the store.

    @ivar claims: the claims every token must carry, with these values (a
        bouncer's L{TokenPolicy.claims<twisted_keycard.bouncer.TokenPolicy>}):
        a token that lacks one, or has another value, is refused.
    @ivar mirror: the revocations in force, kept up to date by whoever set
        it; C{None} to ask the store.
    """

    revocations: IRevocationStore
    keys: KeyringHolder
    clock: IReactorTime
    skew: float = DEFAULT_SKEW
    maxFamilyLifetime: float = DEFAULT_MAX_FAMILY_LIFETIME
    claims: Mapping[str, str] = attrs.field(factory=dict)
    mirror: RevocationMirror | None = None
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
        mirror = self.mirror
        keyring = self.keys.keyring
        if mirror is None or keyring is None:
            return Deferred.fromCoroutine(self._check(credentials))
        try:
            token = credentials.token
            keycardId = keycardIdOf(token)
            if mirror.isRevoked(keycardId):
                raise ProtocolError("revoked token")
            now = self.clock.seconds()
            claims = verify(token, keyring, now, keycardId)
            if mirror.marks:
                marks = mirror.revocationsOf(_markKeys(claims))
                if marks:
                    self._checkMarks(claims, marks)
            elif claims.parentId is not None and mirror.isRevoked(claims.parentId):
                # No marks held: of a token's marks, only its parent can be
                # revoked.
                raise ProtocolError("parent keycard revoked")
            self._checkClaims(claims, credentials, now)
        except UnknownKey as e:
            if e.kid is None:
                return fail(ProtocolError(str(e)))
            # Another bouncer may have rotated the keys: the slow path
            # reloads the keyring, rate-limited.
            return Deferred.fromCoroutine(self._check(credentials))
        except (MalformedToken, BadSignature, ProtocolError) as e:
            return fail(ProtocolError(str(e)))
        except Exception:
            return fail()
        credentials.parentToken = claims
        return succeed(claims.avatarId)

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
        marks = await self.revocations.revocationsOf(_markKeys(claims))
        if marks:
            self._checkMarks(claims, marks)
        self._checkClaims(claims, exchange, now)
        return claims

    def _checkClaims(
        self, claims: TokenClaims, exchange: TokenExchange, now: float
    ) -> None:
        """
        The checks of what a token says: expiry, family lifetime, audience,
        address binding, claims.
        """
        if now > claims.expires + self.skew:
            raise ProtocolError("expired token")
        # The fields, not TokenClaims' properties, where verify sets them.
        familyStart = claims.familyIssued
        if familyStart is None:
            familyStart = claims.issued
        if now >= familyStart + self.maxFamilyLifetime:
            raise ProtocolError("token family past its lifetime")
        audiences = claims.audience
        if audiences is None:
            audiences = claims.audiences
        if (
            exchange.requesterName not in audiences
            if audiences
            else exchange.requesterName is not None
        ):
            # A token is taken through one of its audiences, or through no
            # requester when it has none.
            raise ProtocolError("token not for this requester")
        if claims.address is not None and (
            exchange.address is None
            or normalizeAddress(claims.address) != normalizeAddress(exchange.address)
        ):
            raise ProtocolError("token presented from another address")
        if self.claims and any(
            claims.claims.get(k) != v for k, v in self.claims.items()
        ):
            raise ProtocolError("token claims differ from this bouncer's")

    @staticmethod
    def _checkMarks(claims: TokenClaims, marks: list[Revocation]) -> None:
        """
        Refuse a token whose parent or family is revoked, or that was
        issued to a revoked avatar or through a revoked requester before
        the revocation; C{marks} are the revocations of L{_markKeys}.
        """
        family = FAMILY + claims.family
        for revocation in marks:
            if revocation.keycardId == claims.parentId:
                raise ProtocolError("parent keycard revoked")
            if revocation.keycardId == family:
                # Whenever the token was issued: the family is stolen.
                raise ProtocolError("token family revoked")
            if revocation.revokedAt >= claims.issued:
                raise ProtocolError(f"revoked by {revocation.keycardId.split(':')[0]}")


def _markKeys(claims: TokenClaims) -> list[str]:
    """
    The revocations that may reach a token besides its own id: its
    avatar's, its family's, its requester's and its parent's.
    """
    family = claims.familyId or claims.keycardId
    keys = ["avatar:" + claims.avatarId, FAMILY + family]
    if claims.requesterName is not None:
        keys.append("requester:" + claims.requesterName)
    if claims.parentId is not None:
        keys.append(claims.parentId)
    return keys
