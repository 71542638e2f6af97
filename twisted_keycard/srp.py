"""
SRP-6a keycards (a PAKE, with the maintained C{srp} library): a passive
eavesdropper who records the whole exchange, even without TLS, cannot mount
an offline dictionary attack on the password (SCRAM and Twisted's MD5 login
both allow one).  The server stores a verifier, not a password equivalent;
both sides prove themselves; an unknown user gets a mock exchange that
cannot be told from a real one.

Verifier files hold C{name:SRP-SHA256-2048$<base64 salt>$<base64 verifier>}
lines; the strcred name is C{srp:FILE}.
"""

from __future__ import annotations

import hmac
import secrets
from base64 import b64decode, b64encode
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import srp as _srp
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from twisted_keycard._entriesfile import ParsedEntries, WatchedEntries, parseLines
from twisted_keycard._fileversion import RunInThread
from twisted_keycard.error import ProtocolError, ServerAuthenticationFailed
from twisted_keycard.keycard._interfaces import IAnswerer, IChallenger, IExchange
from twisted_keycard.keycard._keycard import (
    NAME_LENGTH,
    Keycard,
    registerKeycard,
    wireField,
)
from twisted_keycard.keycard._lifecycle import ExchangeLifecycle, ExchangeStep
from twisted_keycard.keycard._selfverifying import requestVerified

PREFIX = "SRP-SHA256-2048"
HASH, GROUP = _srp.SHA256, _srp.NG_2048

#: Bytes of a number of the 2048-bit group; B is sent padded to it (RFC 5054
#: pads too), so its length says nothing.
GROUP_BYTES = 256
SALT_BYTES = 16
FIELD = 1024  # base64 of a 2048-bit number is 344 characters


@registerKeycard
@attrs.define(slots=False, eq=False, kw_only=True)
class SRPKeycard(Keycard):
    """
    The SRP-6a messages, base64: the client's C{A}, the server's C{salt}
    and C{B}, the client's proof C{M}, the server's proof C{HAMK}.
    """

    keycardType = "twisted_keycard.srp-6a"

    username: str | None = wireField(str, NAME_LENGTH, setBy="client")
    A: str | None = wireField(str, FIELD, setBy="client")
    salt: str | None = wireField(str, FIELD, setBy="bouncer")
    B: str | None = wireField(str, FIELD, setBy="bouncer")
    M: str | None = wireField(str, FIELD, setBy="client")
    HAMK: str | None = wireField(str, FIELD, setBy="bouncer")

    def account(self) -> str | None:
        return self.username


def _b64(data: bytes) -> str:
    return b64encode(data).decode("ascii")


def _unb64(text: str | None, what: str) -> bytes:
    if not text:
        raise ProtocolError(f"no {what}")
    try:
        return b64decode(text, validate=True)
    except ValueError:
        raise ProtocolError(f"{what} is not base64") from None


@attrs.frozen
class SRPVerifier:
    """
    What the server keeps: a salt and a verifier, no password equivalent.
    """

    salt: bytes
    verifier: bytes = attrs.field(repr=False)

    @classmethod
    def fromPassword(cls, username: str, password: str) -> SRPVerifier:
        salt, verifier = _srp.create_salted_verification_key(
            username, password, hash_alg=HASH, ng_type=GROUP, salt_len=SALT_BYTES
        )
        return cls(salt, verifier)

    @classmethod
    def fromString(cls, text: str) -> SRPVerifier:
        """
        @raise ValueError: if C{text} is not such a verifier.
        """
        parts = text.strip().split("$")
        if len(parts) != 3 or parts[0] != PREFIX:
            raise ValueError(f"not an {PREFIX} verifier")
        try:
            return cls(
                b64decode(parts[1], validate=True), b64decode(parts[2], validate=True)
            )
        except ValueError:
            raise ValueError(f"not an {PREFIX} verifier") from None

    def toString(self) -> str:
        return f"{PREFIX}${_b64(self.salt)}${_b64(self.verifier)}"


def parseVerifiers(text: str) -> ParsedEntries[SRPVerifier]:
    """
    Parse C{name:SRP-SHA256-2048$salt$verifier} lines, leaving out bad ones.

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
            raise ValueError(f"expected name:{PREFIX}$salt$verifier") from None

    problems = parseLines(text, add)
    return ParsedEntries(verifiers, problems)


def readVerifiers(text: str) -> dict[str, SRPVerifier]:
    """
    @raise ValueError: naming the line number of a bad line.
    """
    return parseVerifiers(text).strict()


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
    M: bytes | None = None
    HAMK: bytes | None = None
    lifecycle: ExchangeLifecycle = attrs.field(factory=ExchangeLifecycle, init=False)

    def challenge(self, keycard: Keycard) -> bool:
        with self.lifecycle.step(ExchangeStep.CHALLENGE):
            if not isinstance(keycard, SRPKeycard):
                raise ProtocolError("not an SRP keycard")
            keycard.salt = _b64(self.salt)
            keycard.B = _b64(self.B.rjust(GROUP_BYTES, b"\0"))
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
            keycard.HAMK = _b64(self.HAMK)


@implementer(ICredentialsChecker, IChallenger)
class SRPVerifiers:
    """
    Checks SRP keycards against stored verifiers.
    """

    credentialInterfaces = (ISRPExchange,)
    keycardClasses = (SRPKeycard,)

    def __init__(
        self, verifiers: Mapping[str, SRPVerifier], *, mockKey: bytes | None = None
    ) -> None:
        self._verifiers: WatchedEntries[SRPVerifier] = WatchedEntries(verifiers)
        self._mockKey = mockKey if mockKey is not None else secrets.token_bytes(32)
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
        clock: IReactorTime | None = None,
        runInThread: RunInThread | None = None,
    ) -> SRPVerifiers:
        """
        Read a verifier file; it is read again, in a thread, when it changes
        (see L{WatchedEntries}; C{clock} and C{runInThread} as there).

        @raise OSError: if the file cannot be read.
        """
        verifiers = cls({})
        verifiers._verifiers = WatchedEntries(
            {}, path, parseVerifiers, clock=clock, runInThread=runInThread
        )
        return verifiers

    def _mock(self, username: str) -> SRPVerifier:
        salt = hmac.digest(self._mockKey, username.encode(), "sha256")[:SALT_BYTES]
        return SRPVerifier(salt, self._mockVerifier)

    def prime(self, keycard: Keycard) -> Deferred[IExchange]:
        """
        Start an exchange, once a changed verifier file is read again.
        """
        return self._verifiers.ready().addCallback(lambda _: self._prime(keycard))

    def _prime(self, keycard: Keycard) -> Deferred[IExchange]:
        if not isinstance(keycard, SRPKeycard) or not keycard.username:
            return fail(ProtocolError("no user name"))
        try:
            A = _unb64(keycard.A, "A")
        except ProtocolError as e:
            return fail(e)
        stored = self._verifiers.get(keycard.username)
        known = stored is not None
        if stored is None:
            stored = self._mock(keycard.username)
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
        return succeed(SRPExchange(keycard.username, known, stored.salt, verifier, B))

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        return requestVerified(credentials, SRPExchange, lambda e: e.username)


@implementer(IAnswerer)
class SRPAnswerer:
    """
    The client side: the password never leaves it, and it checks the
    server's proof.
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
        return SRPKeycard(username=self.username, A=_b64(A))

    def answer(self, keycard: Keycard) -> Keycard:
        if self._user is None or not isinstance(keycard, SRPKeycard):
            raise ProtocolError("no SRP exchange in progress")
        M = self._user.process_challenge(
            _unb64(keycard.salt, "salt"), _unb64(keycard.B, "B")
        )
        if M is None:
            raise ProtocolError("the server's challenge is invalid")
        keycard.M = _b64(M)
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
