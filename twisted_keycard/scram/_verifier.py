"""
SCRAM-SHA-256 keys, and verifiers in PostgreSQL's format.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import attrs
from passlib.utils import saslprep

from ._messages import b64, unb64

MECHANISM = "SCRAM-SHA-256"
DEFAULT_ITERATIONS = 4096
SALT_BYTES = 16


def saltedPassword(password: str, salt: bytes, iterations: int) -> bytes:
    """
    C{Hi(Normalize(password), salt, i)}: PBKDF2-HMAC-SHA256 of the
    SASLprep'd password.
    """
    normal = saslprep(password).encode("utf-8")
    return hashlib.pbkdf2_hmac("sha256", normal, salt, iterations)


def hmacSha256(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha256")


def clientKey(salted: bytes) -> bytes:
    return hmacSha256(salted, b"Client Key")


def serverKey(salted: bytes) -> bytes:
    return hmacSha256(salted, b"Server Key")


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


@attrs.frozen
class Verifier:
    """
    What the server keeps of a password: no password equivalent.

    @ivar iterations: the PBKDF2 iteration count.
    @ivar salt: the salt.
    @ivar storedKey: C{H(ClientKey)}.
    @ivar serverKey: C{HMAC(SaltedPassword, "Server Key")}.
    """

    iterations: int
    salt: bytes
    storedKey: bytes = attrs.field(repr=False)
    serverKey: bytes = attrs.field(repr=False)

    @classmethod
    def fromPassword(
        cls,
        password: str,
        iterations: int = DEFAULT_ITERATIONS,
        salt: bytes | None = None,
    ) -> Verifier:
        """
        Make a verifier from a password, with a fresh 16-byte salt.
        """
        if iterations < 1:
            raise ValueError("iterations must be positive")
        salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
        salted = saltedPassword(password, salt, iterations)
        return cls(
            iterations,
            salt,
            hashlib.sha256(clientKey(salted)).digest(),
            serverKey(salted),
        )

    @classmethod
    def fromString(cls, text: str) -> Verifier:
        """
        Read C{SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>}.

        @raise ValueError: if C{text} is not such a verifier.
        """
        try:
            mechanism, params, keys = text.strip().split("$")
            iterations, salt = params.split(":")
            stored, server = keys.split(":")
            if mechanism != MECHANISM or not iterations.isdigit():
                raise ValueError
            verifier = cls(
                int(iterations),
                unb64(salt, "salt"),
                unb64(stored, "StoredKey"),
                unb64(server, "ServerKey"),
            )
        except Exception:
            raise ValueError("not a SCRAM-SHA-256 verifier") from None
        if verifier.iterations < 1 or not verifier.salt:
            raise ValueError("not a SCRAM-SHA-256 verifier")
        if len(verifier.storedKey) != 32 or len(verifier.serverKey) != 32:
            raise ValueError("not a SCRAM-SHA-256 verifier")
        return verifier

    def toString(self) -> str:
        return (
            f"{MECHANISM}${self.iterations}:{b64(self.salt)}"
            f"${b64(self.storedKey)}:{b64(self.serverKey)}"
        )
