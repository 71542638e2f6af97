"""
scrypt parameters that slow a password down before a PAKE uses it (SRP's
C{x}), so that a stolen verifier costs an attacker one scrypt per guess,
as a SCRAM verifier costs one PBKDF2.
"""

from __future__ import annotations

import hashlib
import secrets
from base64 import b64decode, b64encode

import attrs

#: The default cost: OWASP's scrypt setting with 32 MiB (N=2^15, r=8, p=3).
DEFAULT_N, DEFAULT_R, DEFAULT_P = 2**15, 8, 3
SALT_BYTES = 16
#: The largest cost accepted from a file or a server: far above the default,
#: far below what would keep a client busy for minutes or out of memory.
MAX_N, MAX_R, MAX_P = 2**20, 32, 16
MAX_MEMORY = 256 * 2**20
MAX_WORK = 2**24
#: The derived password's length.
LENGTH = 32
WIRE_NAME = "scrypt"


@attrs.frozen
class ScryptKDF:
    """
    A cost (C{n}, C{r}, C{p}) and a salt: what a client needs, besides the
    password, to derive the password SRP uses.
    """

    n: int
    r: int
    p: int
    salt: bytes

    def __attrs_post_init__(self) -> None:
        if not (2 <= self.n <= MAX_N and self.n & (self.n - 1) == 0):
            raise ValueError(f"scrypt N is a power of 2 from 2 to {MAX_N}")
        if not (1 <= self.r <= MAX_R and 1 <= self.p <= MAX_P):
            raise ValueError(f"scrypt r is 1 to {MAX_R}, p 1 to {MAX_P}")
        if self.memory() > MAX_MEMORY or self.n * self.r * self.p > MAX_WORK:
            raise ValueError("scrypt cost is too high")
        if not 8 <= len(self.salt) <= 64:
            raise ValueError("scrypt salt has 8 to 64 bytes")

    @classmethod
    def generate(
        cls, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P
    ) -> ScryptKDF:
        """
        This cost with a new random salt.
        """
        return cls(n, r, p, secrets.token_bytes(SALT_BYTES))

    def memory(self) -> int:
        """
        The bytes scrypt needs with this cost.
        """
        return 128 * self.r * (self.n + self.p + 2)

    def derive(self, password: str) -> bytes:
        """
        The slow password: scrypt of its UTF-8 bytes.
        """
        return hashlib.scrypt(
            password.encode("utf-8"),
            salt=self.salt,
            n=self.n,
            r=self.r,
            p=self.p,
            maxmem=self.memory() + 2**20,
            dklen=LENGTH,
        )

    def cost(self) -> str:
        """
        C{N:r:p}, as verifier files write it.
        """
        return f"{self.n}:{self.r}:{self.p}"

    @classmethod
    def fromCost(cls, cost: str, salt: bytes) -> ScryptKDF:
        """
        @raise ValueError: if C{cost} is not C{N:r:p} within the bounds.
        """
        parts = cost.split(":")
        if len(parts) != 3 or not all(
            p.isascii() and p.isdigit() and len(p) < 10 for p in parts
        ):
            raise ValueError("scrypt cost is N:r:p")
        n, r, p = (int(part) for part in parts)
        return cls(n, r, p, salt)

    def toWire(self) -> str:
        """
        C{scrypt:N:r:p:base64 salt}, the challenge field that tells the
        client how to derive its password.
        """
        salt = b64encode(self.salt).decode("ascii")
        return f"{WIRE_NAME}:{self.cost()}:{salt}"

    @classmethod
    def fromWire(cls, text: str) -> ScryptKDF:
        """
        @raise ValueError: if C{text} is not such a field within the bounds.
        """
        name, _, rest = text.partition(":")
        cost, _, salt = rest.rpartition(":")
        if name != WIRE_NAME:
            raise ValueError(f"unknown password derivation {name[:16]!r}")
        try:
            raw = b64decode(salt, validate=True)
        except ValueError:
            raise ValueError("scrypt salt is not base64") from None
        return cls.fromCost(cost, raw)
