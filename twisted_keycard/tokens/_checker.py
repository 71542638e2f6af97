"""
The token keycard: log in again with a token issued earlier, on any bouncer
that shares the keyring and the stores, in one round trip.  Its checker
verifies the signature, the expiry, the audience and address claims and
the revocations in force.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import attrs
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from twisted_keycard.error import KeycardDenied, ProtocolError
from twisted_keycard.keycard import (
    TOKEN_LENGTH,
    IAnswerer,
    IChallenger,
    IExchange,
    Keycard,
    normalizeAddress,
    registerKeycard,
    wireField,
)
from twisted_keycard.tokens._tokens import (
    BadSignature,
    KeyringHolder,
    MalformedToken,
    TokenClaims,
    UnknownKey,
    claimedAvatar,
    keycardIdOf,
    verify,
)

#: Seconds of clock difference between bouncers tolerated at expiry.
DEFAULT_SKEW = 5.0

#: Seconds a family of tokens lives after its password login, by default.
DEFAULT_MAX_FAMILY_LIFETIME = 24 * 3600.0

#: The prefix of the marks that revoke a whole family of tokens.
FAMILY = "family:"


class RevocationRecord(Protocol):
    """
    One revocation in force, as a store keeps it (see
    L{twisted_keycard.store.Revocation}).
    """

    @property
    def keycardId(self) -> str:
        """
        The keycard id, or mark (C{avatar:NAME}, C{family:ID}, ...), revoked.
        """

    @property
    def expires(self) -> float:
        """
        When whatever it refuses has expired anyway.
        """

    @property
    def revokedAt(self) -> float:
        """
        When it was recorded.
        """


class RevocationStore(Protocol):
    """
    What a L{TokenChecker} asks a store of revocations (see
    L{twisted_keycard.store.IRevocationStore}) when it has no followed
    L{RevocationMirror}.
    """

    def isRevoked(self, keycardId: str) -> Awaitable[bool]:
        """
        Whether C{keycardId} is revoked.
        """

    def revocationsOf(
        self, keys: Sequence[str]
    ) -> Awaitable[Sequence[RevocationRecord]]:
        """
        The revocations in force among C{keys}.
        """


#: Why a token is denied while the store's revocations cannot be read.
STORE_DOWN = "token logins are refused while the store is unreachable; try again later"

#: Seconds of expiry time that share one bucket of the purge.
BUCKET = 60.0


class RevocationMirror:
    """
    The revocations in force, by keycard id or mark (C{avatar:...},
    C{requester:...}, C{family:...}), each kept until C{grace} seconds past
    its expiry, when whatever it refuses has expired anyway; about 300
    bytes each.

    Like a store, it keeps the later expiry of an id revoked twice.

    A running bouncer makes one, hands it to its L{TokenChecker} and its
    revoker, and fills it from its store: it holds every revocation in
    force once L{followed} is set, and a token is then checked against it
    alone.

    @ivar marks: how many of the revocations it holds are marks (their key
        has a colon) rather than keycard ids: while there are none, a token
        check need not look its marks up.
    @ivar followed: whether it holds every revocation in force, read from
        the store and kept up to date by whoever follows the store (a
        running bouncer); while it does not, checks ask the store.
    """

    def __init__(self, clock: IReactorTime, grace: float = 0.0) -> None:
        """
        @param clock: tells when a revocation has expired.
        @param grace: seconds a revocation is kept past its expiry (the
            clock skew tolerated at a token's expiry).
        """
        self.clock = clock
        self.grace = grace
        self._revoked: dict[str, RevocationRecord] = {}
        #: Ids by the bucket of their expiry, for the purge.
        self._expiring: dict[int, list[str]] = {}
        self._purged = float("-inf")
        self.marks = 0
        self.followed = False
        #: When the store's revocations were last read in full, if ever.
        self.readAt: float | None = None
        #: Seconds after L{readAt} past which the mirror is not L{current}.
        self.maxLag = float("inf")

    def current(self) -> bool:
        """
        Whether the mirror is followed and was read in full within
        L{maxLag} seconds: while it is not, revocations made on other
        bouncers may be missing from it.
        """
        readAt = self.readAt
        return (
            self.followed
            and readAt is not None
            and self.clock.seconds() - readAt <= self.maxLag
        )

    def __len__(self) -> int:
        return len(self._revoked)

    def update(self, revocations: Iterable[RevocationRecord]) -> None:
        """
        Take revocations read from the store or just recorded in it (a
        follower calls this with each batch it reads, empty ones too), and
        forget those past their expiry.
        """
        revoked = self._revoked
        expiring = self._expiring
        for revocation in revocations:
            key = revocation.keycardId
            known = revoked.get(key)
            if known is not None:
                if known.expires >= revocation.expires:
                    continue
            elif ":" in key:
                self.marks += 1
            revoked[key] = revocation
            bucket = int(revocation.expires // BUCKET)
            expiring.setdefault(bucket, []).append(key)
        self._purge()

    def _purge(self) -> None:
        """
        Forget the revocations whose expiry, plus the grace, has passed, a
        bucket at a time.
        """
        cutoff = self.clock.seconds() - self.grace
        last = int(cutoff // BUCKET) - 1
        if last <= self._purged:
            return
        self._purged = last
        revoked = self._revoked
        for bucket in [b for b in self._expiring if b <= last]:
            for key in self._expiring.pop(bucket):
                revocation = revoked.get(key)
                if revocation is not None and revocation.expires < cutoff:
                    del revoked[key]
                    if ":" in key:
                        self.marks -= 1

    def _inForce(self, key: str) -> RevocationRecord | None:
        revocation = self._revoked.get(key)
        if revocation is None:
            return None
        if revocation.expires + self.grace < self.clock.seconds():
            return None
        return revocation

    def isRevoked(self, keycardId: str) -> bool:
        """
        Whether C{keycardId} is revoked, as L{IRevocationStore.isRevoked}.
        """
        return keycardId in self._revoked and self._inForce(keycardId) is not None

    def revocationsOf(self, keys: Sequence[str]) -> list[RevocationRecord]:
        """
        The revocations in force of C{keys}, as
        L{IRevocationStore.revocationsOf}.
        """
        revoked = self._revoked
        if revoked.keys().isdisjoint(keys):
            return []
        found = []
        for key in keys:
            revocation = self._inForce(key)
            if revocation is not None:
                found.append(revocation)
        return found


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

    def claimedName(self) -> str | None:
        """
        The avatar the presented token names (see L{claimedAvatar}).  Not
        its L{account}: failures are not counted against a name a forged
        token could put there.
        """
        return claimedAvatar(self.presented)


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

    With a C{mirror} of the revocations in force that is followed (a
    running bouncer's; see L{RevocationMirror}) and the keyring loaded, a
    check is answered at once, with no store round trip; otherwise the
    revocations are read from the store.

    @ivar claims: the claims every token must carry, with these values (a
        bouncer's L{TokenPolicy.claims<twisted_keycard.bouncer.TokenPolicy>}):
        a token that lacks one, or has another value, is refused.
    @ivar mirror: the revocations in force, used while it is followed;
        C{None} to always ask the store.
    @ivar whenStoreDown: while the mirror is followed but not L{current
        <RevocationMirror.current>} (the store could not be read lately):
        C{"refuse"} denies every token (L{KeycardDenied}, L{STORE_DOWN}),
        C{"accept"} checks it against the mirror as it is.
    """

    revocations: RevocationStore
    keys: KeyringHolder
    clock: IReactorTime
    skew: float = DEFAULT_SKEW
    maxFamilyLifetime: float = DEFAULT_MAX_FAMILY_LIFETIME
    claims: Mapping[str, str] = attrs.field(factory=dict)
    mirror: RevocationMirror | None = None
    whenStoreDown: str = "refuse"
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
        if mirror is None or not mirror.followed or keyring is None:
            return Deferred.fromCoroutine(self._check(credentials))
        if self.whenStoreDown != "accept" and not mirror.current():
            return fail(KeycardDenied(STORE_DOWN))
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
    def _checkMarks(claims: TokenClaims, marks: Sequence[RevocationRecord]) -> None:
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
