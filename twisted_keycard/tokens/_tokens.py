"""
Signed tokens and the keys that sign them: a compact, versioned format,
HMAC-SHA256 under a key named by its id, verified by any key of the
keyring still in its grace period; and the holder that keeps a bouncer's
keyring in step with its store.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
import secrets
import struct
from collections.abc import Awaitable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

import attrs
from twisted.internet.interfaces import IReactorTime

from twisted_keycard.error import KeycardError

#: Bytes of secret in a signing key (256 bits, the size of an HMAC-SHA256
#: block's worth of entropy we need).
SECRET_BYTES = 32

#: Length of a key id.
KID_LENGTH = 8

#: SHA-256's block size, and HMAC's pads: each key byte XORed with 0x36
#: (inner) and 0x5C (outer).
_BLOCK = 64
_INNER = bytes(b ^ 0x36 for b in range(256))
_OUTER = bytes(b ^ 0x5C for b in range(256))


class UnknownKey(KeycardError):
    """
    Raised when a token names a key the keyring does not have, or one whose
    grace period has ended.

    @ivar kid: the key id asked for, if any.
    """

    def __init__(self, message: str, kid: str | None = None) -> None:
        super().__init__(message)
        self.kid = kid


def _newKid() -> str:
    return secrets.token_hex(KID_LENGTH // 2)


@attrs.frozen
class SigningKey:
    """
    One HMAC-SHA256 key.

    @ivar kid: its id, written in every token it signs.
    @ivar secret: the key itself; never in a repr or a log.
    @ivar created: POSIX time it was made.
    @ivar notAfter: POSIX time after which it no longer verifies; C{None}
        while it is a signing key.
    """

    kid: str
    secret: bytes = attrs.field(repr=False)
    created: float
    notAfter: float | None = None
    #: The SHA-256 states of HMAC's inner and outer pads (RFC 2104), each
    #: copied for a MAC: the key's two blocks are hashed once, not at every
    #: token.
    _pads: tuple[Any, Any] = attrs.field(init=False, repr=False, eq=False)

    @_pads.default
    def _padStates(self) -> tuple[Any, Any]:
        """
        HMAC's key, padded to a block (hashed first if longer), XORed with
        each pad, and hashed.
        """
        key = self.secret
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        return (
            hashlib.sha256(key.translate(_INNER)),
            hashlib.sha256(key.translate(_OUTER)),
        )

    def mac(self, first: bytes, second: bytes = b"") -> bytes:
        """
        The HMAC-SHA256 of C{first} followed by C{second} under this key.
        """
        inner, outer = self._pads
        state = inner.copy()
        state.update(first)
        state.update(second)
        final = outer.copy()
        final.update(state.digest())
        digest: bytes = final.digest()
        return digest

    @classmethod
    def generate(cls, now: float) -> SigningKey:
        """
        A new random key.
        """
        return cls(_newKid(), secrets.token_bytes(SECRET_BYTES), now)

    def validAt(self, now: float) -> bool:
        """
        Whether this key still verifies at C{now}.
        """
        return self.notAfter is None or now <= self.notAfter


@attrs.frozen
class Keyring:
    """
    An immutable set of signing keys.  L{rotate} returns a new keyring.
    """

    keys: tuple[SigningKey, ...]
    #: The keys by key id, for L{verifying}.
    _byKid: dict[str, SigningKey] = attrs.field(init=False, repr=False, eq=False)

    @_byKid.default
    def _indexKeys(self) -> dict[str, SigningKey]:
        byKid = {k.kid: k for k in self.keys}
        if len(byKid) != len(self.keys):
            raise ValueError("two keys share a key id")
        return byKid

    @classmethod
    def fromKeys(cls, keys: Iterable[SigningKey]) -> Keyring:
        return cls(tuple(sorted(keys, key=lambda k: (k.created, k.kid))))

    @classmethod
    def generate(cls, now: float) -> Keyring:
        """
        A keyring with one new signing key.
        """
        return cls((SigningKey.generate(now),))

    @property
    def signing(self) -> SigningKey:
        """
        The key that signs: the newest key with no end.

        @raise UnknownKey: if every key is retired.
        """
        for key in reversed(self.keys):
            if key.notAfter is None:
                return key
        raise UnknownKey("the keyring has no signing key")

    def verifying(self, kid: str, now: float) -> SigningKey:
        """
        The key with id C{kid}, if it still verifies at C{now}.

        @raise UnknownKey: if there is no such key or its grace has ended.
        """
        key = self._byKid.get(kid)
        if key is None or (key.notAfter is not None and now > key.notAfter):
            raise UnknownKey("unknown or retired key", kid)
        return key

    def rotate(self, now: float, grace: float) -> tuple[Keyring, SigningKey]:
        """
        Make a new signing key; the current ones verify for C{grace} more
        seconds.  Keys whose grace has already ended are dropped.

        @return: the new keyring and its new signing key.
        """
        fresh = SigningKey.generate(now)
        kept = [
            attrs.evolve(k, notAfter=now + grace) if k.notAfter is None else k
            for k in self.keys
            if k.validAt(now)
        ]
        return Keyring.fromKeys([*kept, fresh]), fresh


VERSION = "kc2"
_PREFIX = VERSION + "."
#: Characters before a token's body, less its keycard id: C{kc2.} and C{.}.
_PREFIX_LENGTH = len(_PREFIX) + 1
#: The prefix of the format before families and audiences, now refused.
_RETIRED = "kc1."
MAX_TOKEN = 4096
MAC_BYTES = 32
#: Requester names one token may name as its audience, at most.
MAX_AUDIENCES = 255
_HEADER = struct.Struct(">BBQQQ")
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
#: A token's start: its version and keycard id, in one match.
_HEAD = re.compile(r"kc2\.([A-Za-z0-9_-]{1,64})\.")

_REQUESTER, _ADDRESS, _PARENT, _CLAIMS = 1, 2, 4, 8
#: How many optional fields each flags value announces.
_PRESENT = [bin(flags).count("1") for flags in range(16)]
#: base64url to the standard alphabet; the standard alphabet's own C{+}
#: and C{/}, and C{=}, to C{*}, which strict decoding refuses: a body is
#: unpadded base64url, with one spelling.
_FROM_URLSAFE = bytes.maketrans(b"-_+/=", b"+/***")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
#: The bits of the last character that encode nothing, by length modulo 4.
_SPARE = [0, 0, 0b1111, 0b11]
#: The (standard alphabet) last characters that set a spare bit, by length
#: modulo 4: a body ending in one has another, canonical, spelling.
_NONCANONICAL = [
    frozenset(c for i, c in enumerate(_ALPHABET) if i & spare) for spare in _SPARE
]
#: The padding that completes an unpadded body, by its length modulo 4.
_PADDING = [b"", b"===", b"==", b"="]
_HEADER_SIZE = _HEADER.size
#: Bytes of the shortest body: the fixed header and the MAC.
_SHORTEST = _HEADER_SIZE + MAC_BYTES
_UNKNOWN_FLAGS = ~(_REQUESTER | _ADDRESS | _PARENT | _CLAIMS)
_NO_CLAIMS: Mapping[str, str] = MappingProxyType({})
_newClaims = tuple.__new__


class MalformedToken(KeycardError):
    """
    Raised when a token is not a well-formed C{kc2} token.  The check is
    made before any key lookup or MAC.
    """


class BadSignature(KeycardError):
    """
    Raised when a token's MAC does not match its key.
    """


class TokenClaims(NamedTuple):
    """
    What a token says.

    @ivar keycardId: the keycard the token was issued with.
    @ivar avatarId: the avatar it authenticates.
    @ivar issued: POSIX time of issue (millisecond precision).
    @ivar expires: POSIX time of expiry (millisecond precision).
    @ivar bouncerName: the bouncer that issued it.
    @ivar requesterName: the requester the keycard came through.
    @ivar address: the client address it is bound to, if any.
    @ivar parentId: the keycard id of the token this one was issued for.
    @ivar claims: free claims set by policy (text keys and values).
    @ivar kid: the id of the key that signed it.
    @ivar familyId: the keycard id of the password login that started the
        chain of token logins this token belongs to; C{None} (to L{sign})
        when this token starts its own family.  See L{family}.
    @ivar familyIssued: POSIX time of that password login (millisecond
        precision); C{None} (to L{sign}) for C{issued}.  See L{familyStart}.
    @ivar audience: the requester names it is accepted through; C{None} (to
        L{sign}) for its own requester's.  See L{audiences}.
    """

    keycardId: str
    avatarId: str
    issued: float
    expires: float
    bouncerName: str
    requesterName: str | None = None
    address: str | None = None
    parentId: str | None = None
    claims: Mapping[str, str] = MappingProxyType({})
    kid: str = ""
    familyId: str | None = None
    familyIssued: float | None = None
    audience: tuple[str, ...] | None = None

    @property
    def family(self) -> str:
        """
        The family id: revoking it refuses every token of the family.
        """
        return self.keycardId if self.familyId is None else self.familyId

    @property
    def familyStart(self) -> float:
        """
        When the family began, with a password login: its lifetime counts
        from there.
        """
        return self.issued if self.familyIssued is None else self.familyIssued

    @property
    def audiences(self) -> tuple[str, ...]:
        """
        The requester names the token is accepted through: C{audience}, or
        by default the one it was issued through (none if it came through
        no requester).
        """
        if self.audience is not None:
            return self.audience
        return () if self.requesterName is None else (self.requesterName,)


def _encodeClaims(claims: Mapping[str, str]) -> str:
    for key, value in claims.items():
        if "=" in key or "\n" in key or "\n" in value:
            raise ValueError(
                "claim keys may not hold '=' or newlines, nor values newlines"
            )
    return "\n".join(f"{k}={v}" for k, v in sorted(claims.items()))


def sign(claims: TokenClaims, key: SigningKey) -> str:
    """
    Make the token for C{claims}, signed with C{key}.

    @raise ValueError: if a field cannot be encoded, or the token would be
        longer than L{MAX_TOKEN}.
    """
    keycardId = claims.keycardId
    family = claims.family
    if not _ID.match(keycardId) or not _ID.match(family):
        raise ValueError("keycard and family ids must be 1-64 base64url characters")
    audiences = claims.audiences
    if len(audiences) > MAX_AUDIENCES:
        raise ValueError(f"a token has at most {MAX_AUDIENCES} audiences")
    flags = 0
    texts = [key.kid, claims.avatarId, claims.bouncerName, family, *audiences]
    if claims.requesterName is not None:
        flags |= _REQUESTER
        texts.append(claims.requesterName)
    if claims.address is not None:
        flags |= _ADDRESS
        texts.append(claims.address)
    if claims.parentId is not None:
        flags |= _PARENT
        texts.append(claims.parentId)
    if claims.claims:
        flags |= _CLAIMS
        texts.append(_encodeClaims(claims.claims))
    text = "\0".join(texts)
    if text.count("\0") != len(texts) - 1:
        raise ValueError("token fields may not hold NUL")
    record = _HEADER.pack(
        flags,
        len(audiences),
        round(claims.issued * 1000),
        round(claims.expires * 1000),
        round(claims.familyStart * 1000),
    ) + text.encode("utf-8")
    head = f"{_PREFIX}{keycardId}."
    mac = key.mac(head.encode("ascii"), record)
    body = binascii.b2a_base64(record + mac, newline=False).translate(_TO_URLSAFE)
    token = head + body.rstrip(b"=").decode("ascii")
    if len(token) > MAX_TOKEN:
        raise ValueError(f"a token is at most {MAX_TOKEN} characters")
    return token


def keycardIdOf(token: object) -> str:
    """
    The keycard id of a token, read without any other check, for the
    revocation check that comes first.

    @raise MalformedToken: if the token does not start as a C{kc2} token.
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN or not token.isascii():
        raise MalformedToken("a token is an ASCII string of at most 4096 characters")
    head = _HEAD.match(token)
    if head is None:
        raise _malformedHead(token)
    return head[1]


def _malformedHead(token: str) -> MalformedToken:
    """
    Why C{token}, which L{_HEAD} does not match, is refused.
    """
    if token.startswith(_RETIRED):
        return MalformedToken(
            "kc1 tokens (no family, audience or family start) are no longer"
            " accepted: log in with a password"
        )
    if not token.startswith(_PREFIX):
        return MalformedToken(f"not a {VERSION} token")
    return MalformedToken("malformed keycard id")


def _body(token: object, keycardId: str) -> tuple[bytes, int, bytes]:
    """
    A token's bytes, where its body starts, and its body decoded (record
    and MAC), for a token whose keycard id L{keycardIdOf} read.

    @raise MalformedToken: if the body is not canonical unpadded base64url
        or is too short to hold a record and a MAC.
    """
    assert isinstance(token, str)
    # keycardIdOf checked that the token is ASCII.
    data = token.encode("ascii")
    cut = _PREFIX_LENGTH + len(keycardId)
    encoded = data[cut:].translate(_FROM_URLSAFE)
    size = len(encoded)
    try:
        raw = binascii.a2b_base64(encoded + _PADDING[size % 4], strict_mode=True)
    except (binascii.Error, ValueError):
        raise MalformedToken("token body is not unpadded base64url") from None
    if len(raw) < _SHORTEST:
        raise MalformedToken("truncated token")
    if encoded[-1] in _NONCANONICAL[size % 4]:
        # The spare bits of the last character: one token, one spelling.
        raise MalformedToken("token body is not canonical base64url")
    return data, cut, raw


def claimedAvatar(token: object) -> str | None:
    """
    The avatar a token names, read without checking its key, MAC or
    anything else: a claim, for the audit line of a login that presents
    it (the bouncer escapes it there), never a proof.

    @return: C{None} if the token is not well formed enough to name one.
    """
    try:
        raw = _body(token, keycardIdOf(token))[2]
        texts = raw[_HEADER_SIZE:-MAC_BYTES].decode("utf-8").split("\0", 2)
    except (MalformedToken, UnicodeDecodeError):
        return None
    return texts[1] if len(texts) > 1 else None


def claimedExpiry(token: object) -> float | None:
    """
    The expiry a token states (POSIX time), read without checking its key,
    MAC or anything else: only for a token a bouncer has just accepted, to
    hold its login no longer than the token is valid.

    @return: C{None} if the token is not well formed enough to state one.
    """
    try:
        raw = _body(token, keycardIdOf(token))[2]
    except MalformedToken:
        return None
    expires: int = _HEADER.unpack_from(raw)[3]
    return expires / 1000


def verify(
    token: object, keyring: Keyring, now: float, keycardId: str | None = None
) -> TokenClaims:
    """
    Check a token's form, key and MAC, and return what it says.  Expiry and
    address binding are the caller's to check (see L{TokenClaims}).

    @raise MalformedToken: if it is not well formed.
    @raise twisted_keycard.tokens._tokens.UnknownKey: if its key is unknown or
        retired at C{now}.
    @raise BadSignature: if its MAC is wrong.
    @param keycardId: what L{keycardIdOf} returned for this token, if the
        caller already asked.
    """
    if keycardId is None:
        keycardId = keycardIdOf(token)
    data, cut, raw = _body(token, keycardId)
    record = raw[:-MAC_BYTES]
    flags, audienceCount, issued, expires, familyIssued = _HEADER.unpack_from(record)
    if flags & _UNKNOWN_FLAGS:
        raise MalformedToken("unknown token flags")
    try:
        texts = record[_HEADER_SIZE:].decode("utf-8").split("\0")
    except UnicodeDecodeError:
        raise MalformedToken("token text is not UTF-8") from None
    optional = 4 + audienceCount
    if len(texts) != optional + _PRESENT[flags]:
        raise MalformedToken("wrong number of token fields")
    kid = texts[0]
    try:
        key = keyring.verifying(kid, now)
    except UnknownKey:
        if not kid.isascii():
            raise MalformedToken("malformed key id") from None
        raise
    if not hmac.compare_digest(key.mac(data[:cut], record), raw[-MAC_BYTES:]):
        raise BadSignature("bad token signature")
    familyId = texts[3]
    if not _ID.match(familyId):
        raise MalformedToken("malformed family id")
    requesterName = address = parentId = None
    claims: Mapping[str, str] = _NO_CLAIMS
    if flags:
        # The optional fields in order, each present as its flag says.
        at = optional
        if flags & _REQUESTER:
            requesterName = texts[at]
            at += 1
        if flags & _ADDRESS:
            address = texts[at]
            at += 1
        if flags & _PARENT:
            parentId = texts[at]
            at += 1
        if flags & _CLAIMS:
            claims = _decodeClaims(texts[at])
    # The fields in TokenClaims' order, without its generated __new__.
    return _newClaims(
        TokenClaims,
        (
            keycardId,
            texts[1],
            issued / 1000,
            expires / 1000,
            texts[2],
            requesterName,
            address,
            parentId,
            claims,
            kid,
            familyId,
            familyIssued / 1000,
            tuple(texts[4:optional]) if audienceCount else (),
        ),
    )


def _decodeClaims(text: str) -> dict[str, str]:
    """
    The claims of a token, from their C{key=value} lines.

    @raise MalformedToken: if a line has no C{=}.
    """
    claims = {}
    for line in text.split("\n") if text else ():
        name, sep, value = line.partition("=")
        if not sep:
            raise MalformedToken("malformed token claim")
        claims[name] = value
    return claims


#: Seconds between two reloads of the keyring forced by an unknown key id,
#: so that a peer sending made-up key ids cannot make us hit the store.
RELOAD_INTERVAL = 5.0


class KeyringStore(Protocol):
    """
    Where a L{KeyringHolder} keeps the keyring: a store's
    L{IKeyringStore<twisted_keycard.store.IKeyringStore>}.
    """

    def loadKeyring(self) -> Awaitable[Keyring | None]:
        """
        The stored keyring, if any.
        """

    def saveKeyring(self, keyring: Keyring) -> Awaitable[None]:
        """
        Store C{keyring} in place of the stored one.
        """

    def keyringVersion(self) -> Awaitable[int]:
        """
        A number that changes whenever the keyring is saved.
        """


@attrs.define
class KeyringHolder:
    """
    Holds the current L{Keyring}, loaded from (and on first use created in)
    a store (L{KeyringStore}).
    """

    store: KeyringStore
    clock: IReactorTime
    keyring: Keyring | None = None
    _lastReload: float = float("-inf")
    #: The store's keyring version when C{keyring} was loaded.
    _version: int | None = None

    async def load(self) -> Keyring:
        """
        Load the stored keyring, or make and store one if there is none.
        """
        # The version first: a keyring saved meanwhile is loaded again at
        # the next follow, never missed.
        version = await self.store.keyringVersion()
        keyring = await self.store.loadKeyring()
        if keyring is None:
            keyring = Keyring.generate(self.clock.seconds())
            await self.store.saveKeyring(keyring)
        self.keyring = keyring
        self._version = version
        self._lastReload = self.clock.seconds()
        return keyring

    async def follow(self) -> bool:
        """
        Load the keyring again if it was saved since it was loaded (a
        rotation, here or by another process), so that this bouncer signs
        with the new key and ends the old keys' grace by its own clock.
        One cheap read of the store's keyring version when nothing changed.

        @return: whether it was loaded again.
        """
        if self.keyring is None:
            return False
        if await self.store.keyringVersion() == self._version:
            return False
        await self.load()
        return True

    async def current(self) -> Keyring:
        """
        The keyring, loading it on first use.
        """
        if self.keyring is None:
            return await self.load()
        return self.keyring

    async def reloadFor(self, kid: str) -> Keyring:
        """
        Reload the keyring because a token named key C{kid}, unknown here
        (another bouncer may have rotated), at most once per
        L{RELOAD_INTERVAL}.
        """
        keyring = await self.current()
        if any(k.kid == kid for k in keyring.keys):
            return keyring
        if self.clock.seconds() - self._lastReload < RELOAD_INTERVAL:
            raise UnknownKey("unknown key")
        return await self.load()

    async def rotate(self, grace: float) -> SigningKey:
        """
        Make a new signing key and store the keyring; the older keys verify
        for C{grace} more seconds.
        """
        keyring = await self.load()
        rotated, fresh = keyring.rotate(self.clock.seconds(), grace)
        await self.store.saveKeyring(rotated)
        # The version stays the one before this save: the next follow loads
        # the keyring again, in case another process saved one meanwhile.
        self.keyring = rotated
        return fresh
