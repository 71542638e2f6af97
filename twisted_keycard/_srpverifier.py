"""
SRP verifiers as files hold them: the password's scrypt (cost and salt
kept beside the verifier) or, in older lines, the password itself, put
through SRP-6a's C{x} with SHA-256 in the 2048-bit group.
"""

from __future__ import annotations

from base64 import b64decode, b64encode
from collections import Counter
from collections.abc import Iterable

import attrs
import srp as _srp

from twisted_keycard._entriesfile import ParsedEntries, parseLines
from twisted_keycard._mocks import WithMocks
from twisted_keycard._scrypt import DEFAULT_N, DEFAULT_P, DEFAULT_R, ScryptKDF

#: Verifiers made from the password itself (weaker; still read).
PREFIX = "SRP-SHA256-2048"
#: Verifiers made from the password's scrypt (the default).
SCRYPT_PREFIX = "SRP-SHA256-2048-SCRYPT"
HASH, GROUP = _srp.SHA256, _srp.NG_2048
SALT_BYTES = 16


def b64(data: bytes) -> str:
    return b64encode(data).decode("ascii")


@attrs.frozen
class SRPVerifier:
    """
    What the server keeps: a salt and a verifier, no password equivalent,
    and the scrypt cost and salt the password went through (C{None} for an
    older, weaker verifier).
    """

    salt: bytes
    verifier: bytes = attrs.field(repr=False)
    kdf: ScryptKDF | None = None

    @classmethod
    def fromPassword(
        cls, username: str, password: str, kdf: ScryptKDF | None = None
    ) -> SRPVerifier:
        """
        A verifier of the password's scrypt, with C{kdf} (default: the
        default cost and a new salt).
        """
        kdf = kdf if kdf is not None else ScryptKDF.generate()
        return cls._make(username, kdf.derive(password), kdf)

    @classmethod
    def withoutKDF(cls, username: str, password: str) -> SRPVerifier:
        """
        An older verifier, of the password itself: cheap to attack if
        stolen.  Only for peers that cannot derive a password yet.
        """
        return cls._make(username, password.encode("utf-8"), None)

    @classmethod
    def _make(cls, username: str, secret: bytes, kdf: ScryptKDF | None) -> SRPVerifier:
        for _ in range(64):
            salt, verifier = _srp.create_salted_verification_key(
                username, secret, hash_alg=HASH, ng_type=GROUP, salt_len=SALT_BYTES
            )
            # The library drops leading zero bytes; mock salts have them all.
            if len(salt) == SALT_BYTES:
                return cls(salt, verifier, kdf)
        raise RuntimeError("no full-length SRP salt in 64 tries")

    @classmethod
    def fromString(cls, text: str) -> SRPVerifier:
        """
        @raise ValueError: if C{text} is not such a verifier.
        """
        parts = text.strip().split("$")
        try:
            if parts[0] == SCRYPT_PREFIX and len(parts) == 5:
                kdf = ScryptKDF.fromCost(parts[1], b64decode(parts[2], validate=True))
                return cls(_unb64Stored(parts[3]), _unb64Stored(parts[4]), kdf)
            if parts[0] == PREFIX and len(parts) == 3:
                return cls(_unb64Stored(parts[1]), _unb64Stored(parts[2]))
        except ValueError:
            pass
        raise ValueError(f"not an {SCRYPT_PREFIX} or {PREFIX} verifier")

    def toString(self) -> str:
        end = f"{b64(self.salt)}${b64(self.verifier)}"
        if self.kdf is None:
            return f"{PREFIX}${end}"
        kdf = self.kdf
        return f"{SCRYPT_PREFIX}${kdf.cost()}${b64(kdf.salt)}${end}"


def _unb64Stored(text: str) -> bytes:
    return b64decode(text, validate=True)


def mockCost(verifiers: Iterable[SRPVerifier]) -> tuple[int, int, int] | None:
    """
    The scrypt cost most C{verifiers} have (C{None}: most have none), which
    mock exchanges show so that unknown users look like known ones; the
    default cost when there are no verifiers.
    """
    costs = Counter(
        None if v.kdf is None else (v.kdf.n, v.kdf.r, v.kdf.p) for v in verifiers
    )
    if not costs:
        return (DEFAULT_N, DEFAULT_R, DEFAULT_P)
    return costs.most_common(1)[0][0]


def parseVerifiers(text: str) -> ParsedEntries[SRPVerifier]:
    """
    Parse verifier lines, leaving out bad ones.

    @return: the verifiers, and a problem naming the line number of each
        bad line.
    """
    verifiers = {}

    def add(line: str) -> None:
        name, sep, rest = line.partition(":")
        try:
            if not sep or not name:
                raise ValueError
            verifiers[name] = SRPVerifier.fromString(rest)
        except ValueError:
            raise ValueError(
                f"expected name:{SCRYPT_PREFIX}$N:r:p$kdfsalt$salt$verifier,"
                f" or name:{PREFIX}$salt$verifier"
            ) from None

    problems = parseLines(text, add)
    return ParsedEntries(verifiers, problems)


def parseWithMockCost(text: str) -> ParsedEntries[SRPVerifier]:
    """
    Parse verifier lines (see L{parseVerifiers}), with the scrypt cost of
    mock exchanges (see L{mockCost}) beside the verifiers.
    """
    parsed = parseVerifiers(text)
    cost = mockCost(parsed.entries.values())
    return ParsedEntries(WithMocks(parsed.entries, cost), parsed.problems)


def readVerifiers(text: str) -> dict[str, SRPVerifier]:
    """
    @raise ValueError: naming the line number of a bad line.
    """
    return parseVerifiers(text).strict()
