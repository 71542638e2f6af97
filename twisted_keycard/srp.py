"""
SRP-6a keycards (a PAKE, with the maintained C{srp} library): a passive
eavesdropper learns nothing it can check a password guess against, and the
server keeps a verifier, not the password.  Verifiers as files hold them
(the password stretched by scrypt first, with its cost and salt), and the
scrypt parameters themselves.
"""

from __future__ import annotations

import hashlib
import secrets
from base64 import b64decode, b64encode
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import srp as _srp
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from twisted_keycard._files import (
    ParsedEntries,
    RunInThread,
    WatchedEntries,
    parseLines,
)
from twisted_keycard._mocks import (
    IMockSecretTaker,
    WithMocks,
    mockBytes,
    mocksOf,
    mockSubkey,
)
from twisted_keycard.error import ProtocolError, ServerAuthenticationFailed
from twisted_keycard.keycard import (
    NAME_LENGTH,
    ExchangeLifecycle,
    ExchangeStep,
    IAnswerer,
    IChallenger,
    IExchange,
    Keycard,
    WireSteps,
    registerKeycard,
    requestVerified,
    wireField,
)

__all__ = [
    "PREFIX",
    "SCRYPT_PREFIX",
    "SRPAnswerer",
    "SRPExchange",
    "SRPKeycard",
    "SRPVerifier",
    "SRPVerifiers",
    "ScryptKDF",
    "readVerifiers",
]


#: The default cost: OWASP's scrypt setting with 32 MiB (N=2^15, r=8, p=3).
DEFAULT_N, DEFAULT_R, DEFAULT_P = 2**15, 8, 3
KDF_SALT_BYTES = 16
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
        return cls(n, r, p, secrets.token_bytes(KDF_SALT_BYTES))

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


#: Bytes of a number of the 2048-bit group; B is sent padded to it (RFC 5054
#: pads too), so its length says nothing.
GROUP_BYTES = 256
FIELD = 1024  # base64 of a 2048-bit number is 344 characters
KDF_FIELD = 128


@registerKeycard
@attrs.define(slots=False, eq=False, kw_only=True)
class SRPKeycard(Keycard):
    """
    The SRP-6a messages, base64: the client's C{A}, the server's C{salt}
    and C{B}, the client's proof C{M}, the server's proof C{HAMK}; and
    C{kdf}, how the client derives its password (C{scrypt:N:r:p:salt}),
    absent for an older verifier.
    """

    keycardType = "twisted_keycard.srp-6a"
    steps = WireSteps(
        first=("username", "A"),
        challenge=("salt", "kdf", "B"),
        answer=("M",),
        proof=("HAMK",),
    )

    username: str | None = wireField(str, NAME_LENGTH, setBy="client")
    A: str | None = wireField(str, FIELD, setBy="client")
    salt: str | None = wireField(str, FIELD, setBy="bouncer")
    kdf: str | None = wireField(str, KDF_FIELD, setBy="bouncer")
    B: str | None = wireField(str, FIELD, setBy="bouncer")
    M: str | None = wireField(str, FIELD, setBy="client")
    HAMK: str | None = wireField(str, FIELD, setBy="bouncer")

    def account(self) -> str | None:
        return self.username


def _unb64(text: str | None, what: str) -> bytes:
    if not text:
        raise ProtocolError(f"no {what}")
    try:
        return b64decode(text, validate=True)
    except ValueError:
        raise ProtocolError(f"{what} is not base64") from None


class ISRPExchange(IExchange):
    """
    An SRP exchange on the bouncer's side.
    """


@implementer(ISRPExchange)
@attrs.define
class SRPExchange:
    """
    The library's verifier for this exchange, kept on the bouncer's side.

    @ivar lifecycle: the guard that takes each step once, in order.
    """

    username: str
    known: bool
    salt: bytes
    verifier: Any = attrs.field(repr=False)
    B: bytes
    kdf: str | None = None
    M: bytes | None = None
    HAMK: bytes | None = None
    lifecycle: ExchangeLifecycle = attrs.field(factory=ExchangeLifecycle, init=False)

    def challenge(self, keycard: Keycard) -> bool:
        with self.lifecycle.step(ExchangeStep.CHALLENGE):
            if not isinstance(keycard, SRPKeycard):
                raise ProtocolError("not an SRP keycard")
            keycard.salt = b64(self.salt)
            keycard.kdf = self.kdf
            keycard.B = b64(self.B.rjust(GROUP_BYTES, b"\0"))
        return True

    def answer(self, keycard: Keycard) -> None:
        with self.lifecycle.step(ExchangeStep.ANSWER):
            if not isinstance(keycard, SRPKeycard):
                raise ProtocolError("not an SRP keycard")
            self.M = _unb64(keycard.M, "proof")

    def verify(self) -> bool:
        return self.lifecycle.verify(self._check)

    def _check(self) -> bool:
        self.HAMK = self.verifier.verify_session(self.M)
        return self.HAMK is not None and self.known

    def conclude(self, keycard: Keycard) -> None:
        with self.lifecycle.step(ExchangeStep.CONCLUDE):
            if not isinstance(keycard, SRPKeycard):
                raise ProtocolError("not an SRP keycard")
            assert self.HAMK is not None
            keycard.HAMK = b64(self.HAMK)


@implementer(ICredentialsChecker, IChallenger, IMockSecretTaker)
class SRPVerifiers:
    """
    Checks SRP keycards against stored verifiers.

    An unknown user gets a mock exchange: salts stable per name (made from
    the mock secret), the scrypt cost most verifiers have, a verifier
    nobody has the password of, the same work and the same refusal.
    """

    credentialInterfaces = (ISRPExchange,)
    keycardClasses = (SRPKeycard,)

    def __init__(
        self, verifiers: Mapping[str, SRPVerifier], *, mockKey: bytes | None = None
    ) -> None:
        """
        @param verifiers: verifiers by user name.
        @param mockKey: the mock secret (see L{setMockSecret}); random by
            default, so mock salts change when the server restarts.
        """
        self._verifiers: WatchedEntries[SRPVerifier] = WatchedEntries(verifiers)
        self._mockCost = mockCost(verifiers.values())
        self.setMockSecret(mockKey if mockKey is not None else secrets.token_bytes(32))
        # A verifier for a password nobody knows, used under each unknown
        # user's stable salt: made once, so unknown users cost no more.
        _, self._mockVerifier = _srp.create_salted_verification_key(
            "", secrets.token_hex(16), hash_alg=HASH, ng_type=GROUP, salt_len=SALT_BYTES
        )

    @classmethod
    def fromFile(
        cls,
        path: str | Path,
        *,
        mockKey: bytes | None = None,
        clock: IReactorTime | None = None,
        runInThread: RunInThread | None = None,
    ) -> SRPVerifiers:
        """
        Read a verifier file; it is read again, in a thread, when it changes
        (see L{WatchedEntries}; C{clock} and C{runInThread} as there).
        Mock exchanges follow the scrypt cost most of its verifiers have.

        @raise OSError: if the file cannot be read.
        """
        verifiers = cls({}, mockKey=mockKey)
        verifiers._verifiers = WatchedEntries(
            {}, path, parseWithMockCost, clock=clock, runInThread=runInThread
        )
        return verifiers

    def setMockSecret(self, secret: bytes) -> None:
        """
        Make mock salts from C{secret} from now on: bouncers given the same
        secret (L{twisted_keycard.store} keeps one) show the same salts for
        a name.

        @raise ValueError: if C{secret} is shorter than 16 bytes.
        """
        self._saltKey = mockSubkey(secret, b"SRP salt")
        self._kdfSaltKey = mockSubkey(secret, b"SRP scrypt salt")

    def _mock(self, username: str) -> SRPVerifier:
        cost = mocksOf(self._verifiers.current(), self._mockCost)
        salt = mockBytes(self._saltKey, username, SALT_BYTES)
        kdfSalt = mockBytes(self._kdfSaltKey, username, KDF_SALT_BYTES)
        kdf = None if cost is None else ScryptKDF(*cost, kdfSalt)
        return SRPVerifier(salt, self._mockVerifier, kdf)

    def prime(self, keycard: Keycard) -> Deferred[IExchange]:
        """
        Start an exchange, once a changed verifier file is read again.
        """
        return self._verifiers.whenCurrent(lambda: self._prime(keycard))

    def _prime(self, keycard: Keycard) -> Deferred[IExchange]:
        if not isinstance(keycard, SRPKeycard) or not keycard.username:
            return fail(ProtocolError("no user name"))
        try:
            A = _unb64(keycard.A, "A")
        except ProtocolError as e:
            return fail(e)
        found = self._verifiers.current().get(keycard.username)
        # Made for every name, so a known one costs the same work.
        mock = self._mock(keycard.username)
        known = found is not None
        stored = found if found is not None else mock
        verifier = _srp.Verifier(
            keycard.username,
            stored.salt,
            stored.verifier,
            A,
            hash_alg=HASH,
            ng_type=GROUP,
        )
        salt, B = verifier.get_challenge()
        if salt is None or B is None:
            return fail(ProtocolError("invalid A"))
        kdf = None if stored.kdf is None else stored.kdf.toWire()
        return succeed(
            SRPExchange(keycard.username, known, stored.salt, verifier, B, kdf)
        )

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        return requestVerified(credentials, SRPExchange, lambda e: e.username)


@implementer(IAnswerer)
class SRPAnswerer:
    """
    The client side: the password never leaves it, and it checks the
    server's proof.  When the challenge names a password derivation
    (scrypt, with a cost within L{twisted_keycard.srp}'s bounds), the
    password goes through it first.
    """

    keycardClass = SRPKeycard

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self._password = password
        self._user: Any = None

    def __repr__(self) -> str:
        return f"<SRPAnswerer {self.username!r}>"

    def start(self) -> Keycard:
        self._user = _srp.User(
            self.username, self._password, hash_alg=HASH, ng_type=GROUP
        )
        _, A = self._user.start_authentication()
        return SRPKeycard(username=self.username, A=b64(A))

    def answer(self, keycard: Keycard) -> Keycard:
        if self._user is None or not isinstance(keycard, SRPKeycard):
            raise ProtocolError("no SRP exchange in progress")
        if keycard.kdf is not None:
            try:
                kdf = ScryptKDF.fromWire(keycard.kdf)
            except ValueError as e:
                raise ProtocolError(f"the server's password derivation: {e}") from None
            # The same ephemeral secret, so the same A the server has.
            self._user = _srp.User(
                self.username,
                kdf.derive(self._password),
                hash_alg=HASH,
                ng_type=GROUP,
                bytes_a=self._user.get_ephemeral_secret(),
            )
        M = self._user.process_challenge(
            _unb64(keycard.salt, "salt"), _unb64(keycard.B, "B")
        )
        if M is None:
            raise ProtocolError("the server's challenge is invalid")
        keycard.M = b64(M)
        return keycard

    def finish(self, keycard: Keycard) -> None:
        if (
            self._user is None
            or not isinstance(keycard, SRPKeycard)
            or not keycard.HAMK
        ):
            raise ServerAuthenticationFailed("the server sent no proof")
        try:
            self._user.verify_session(_unb64(keycard.HAMK, "server proof"))
        except ProtocolError as e:
            raise ServerAuthenticationFailed(str(e)) from None
        if not self._user.authenticated():
            raise ServerAuthenticationFailed("the server's proof is wrong")
