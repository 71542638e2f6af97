"""
What a server keeps of a SCRAM-SHA-256 password, in PostgreSQL's format.
"""

from __future__ import annotations

import re
import secrets

import attrs

from twisted_keycard.error import ProtocolError
from twisted_keycard.scram._crypto import (
    KEY_BYTES,
    clientKey,
    saltedPassword,
    serverKey,
    sha256,
)
from twisted_keycard.scram._messages import b64, unb64

MECHANISM = "SCRAM-SHA-256"
DEFAULT_ITERATIONS = 4096
SALT_BYTES = 16

_FORMAT = f"{MECHANISM}$<iterations>:<salt>$<StoredKey>:<ServerKey>"
_VERIFIER = re.compile(
    re.escape(MECHANISM) + r"\$([1-9][0-9]{0,9}):([^$:]*)\$([^$:]*):([^$:]*)\Z"
)


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be positive")


def _nonEmpty(
    instance: object, attribute: attrs.Attribute[bytes], value: bytes
) -> None:
    if not value:
        raise ValueError(f"{attribute.name} must not be empty")


def _key(instance: object, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    if len(value) != KEY_BYTES:
        raise ValueError(f"{attribute.name} must be {KEY_BYTES} bytes")


@attrs.frozen
class Verifier:
    """
    What the server keeps of a password: enough to check a proof and to sign
    its own answer, but not enough to log in.

    @ivar iterations: the PBKDF2 iteration count.
    @ivar salt: the salt.
    @ivar storedKey: C{H(ClientKey)}.
    @ivar serverKey: C{HMAC(SaltedPassword, "Server Key")}.
    """

    iterations: int = attrs.field(
        validator=[attrs.validators.instance_of(int), _positive]
    )
    salt: bytes = attrs.field(
        validator=[attrs.validators.instance_of(bytes), _nonEmpty]
    )
    storedKey: bytes = attrs.field(
        repr=False, validator=[attrs.validators.instance_of(bytes), _key]
    )
    serverKey: bytes = attrs.field(
        repr=False, validator=[attrs.validators.instance_of(bytes), _key]
    )

    @classmethod
    def fromPassword(
        cls,
        password: str,
        iterations: int = DEFAULT_ITERATIONS,
        salt: bytes | None = None,
    ) -> Verifier:
        """
        Make a verifier from a password, with a fresh random 16-byte salt
        unless one is given.

        @raise ValueError: for a non-positive iteration count, an empty salt,
            or a password SASLprep refuses.
        """
        if iterations < 1:
            raise ValueError("iterations must be positive")
        if salt is None:
            salt = secrets.token_bytes(SALT_BYTES)
        elif not salt:
            raise ValueError("salt must not be empty")
        salted = saltedPassword(password, salt, iterations)
        return cls(
            iterations=iterations,
            salt=salt,
            storedKey=sha256(clientKey(salted)),
            serverKey=serverKey(salted),
        )

    @classmethod
    def fromString(cls, text: str) -> Verifier:
        """
        Read C{SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>}, the
        base64 fields as PostgreSQL writes them.

        @raise ValueError: if C{text} is not such a verifier; the message
            says what is wrong without repeating C{text}.
        """
        match = _VERIFIER.match(text.strip())
        if match is None:
            raise ValueError(f"not a SCRAM-SHA-256 verifier (expected {_FORMAT})")
        iterations, salt, stored, server = match.groups()
        try:
            return cls(
                iterations=int(iterations),
                salt=unb64(salt, "the salt"),
                storedKey=unb64(stored, "StoredKey"),
                serverKey=unb64(server, "ServerKey"),
            )
        except (ProtocolError, ValueError) as e:
            raise ValueError(f"bad SCRAM-SHA-256 verifier: {e}") from None

    def toString(self) -> str:
        """
        This verifier in PostgreSQL's format.
        """
        return (
            f"{MECHANISM}${self.iterations}:{b64(self.salt)}"
            f"${b64(self.storedKey)}:{b64(self.serverKey)}"
        )
