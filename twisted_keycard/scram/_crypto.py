"""
The SCRAM-SHA-256 key derivations of RFC 5802, section 3.
"""

from __future__ import annotations

import hashlib
import hmac

from passlib.utils import saslprep

#: Bytes in a SHA-256 digest, so in every SCRAM-SHA-256 key and proof.
KEY_BYTES = 32


def saltedPassword(password: str, salt: bytes, iterations: int) -> bytes:
    """
    C{Hi(Normalize(password), salt, i)}: PBKDF2-HMAC-SHA256 of the
    SASLprep'd password.

    @raise ValueError: if the password has characters SASLprep prohibits.
    """
    normal = saslprep(password).encode("utf-8")
    return hashlib.pbkdf2_hmac("sha256", normal, salt, iterations)


def hmacSha256(key: bytes, message: bytes) -> bytes:
    """
    C{HMAC(key, message)} with SHA-256.
    """
    return hmac.digest(key, message, "sha256")


def sha256(data: bytes) -> bytes:
    """
    C{H(data)}.
    """
    return hashlib.sha256(data).digest()


def clientKey(salted: bytes) -> bytes:
    """
    C{ClientKey := HMAC(SaltedPassword, "Client Key")}.
    """
    return hmacSha256(salted, b"Client Key")


def serverKey(salted: bytes) -> bytes:
    """
    C{ServerKey := HMAC(SaltedPassword, "Server Key")}.
    """
    return hmacSha256(salted, b"Server Key")


def xor(a: bytes, b: bytes) -> bytes:
    """
    The exclusive or of two strings of the same length.

    @raise ValueError: if their lengths differ.
    """
    if len(a) != len(b):
        raise ValueError("xor of strings of different lengths")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")
