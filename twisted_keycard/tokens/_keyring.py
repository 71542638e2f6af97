"""
The keys that sign tokens.

Each key has a key id (C{kid}).  The newest key without an end signs; older
keys still verify until their C{notAfter} (the grace period after a
rotation) and are then dropped.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from typing import Any

import attrs

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
