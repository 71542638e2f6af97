"""
SRP-6a keycards (a PAKE, with the maintained C{srp} library): a passive
eavesdropper who records the whole exchange, even without TLS, cannot mount
an offline dictionary attack on the password (SCRAM and Twisted's MD5 login
both allow one).  The server stores a verifier, not a password equivalent;
both sides prove themselves; an unknown user gets a mock exchange that
cannot be told from a real one.

Verifier files hold C{name:SRP-SHA256-2048-SCRYPT$N:r:p$<base64 scrypt
salt>$<base64 salt>$<base64 verifier>} lines: the password goes through
scrypt before SRP's C{x}, so a stolen verifier costs one scrypt per guess;
the challenge tells the client the scrypt cost and salt.  Older
C{name:SRP-SHA256-2048$<base64 salt>$<base64 verifier>} lines (no scrypt,
two SHA-256 per guess) are still read.  The strcred name is C{srp:FILE}.
"""

from __future__ import annotations

import secrets
from base64 import b64decode
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import srp as _srp
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from twisted_keycard._entriesfile import WatchedEntries
from twisted_keycard._fileversion import RunInThread
from twisted_keycard._mocks import IMockSecretTaker, mockBytes, mocksOf, mockSubkey
from twisted_keycard._scrypt import SALT_BYTES as KDF_SALT_BYTES
from twisted_keycard._scrypt import ScryptKDF
from twisted_keycard._srpverifier import (
    GROUP,
    HASH,
    PREFIX,
    SALT_BYTES,
    SCRYPT_PREFIX,
    SRPVerifier,
    b64,
    mockCost,
    parseWithMockCost,
    readVerifiers,
)
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
        return self._verifiers.ready().addCallback(lambda _: self._prime(keycard))

    def _prime(self, keycard: Keycard) -> Deferred[IExchange]:
        if not isinstance(keycard, SRPKeycard) or not keycard.username:
            return fail(ProtocolError("no user name"))
        try:
            A = _unb64(keycard.A, "A")
        except ProtocolError as e:
            return fail(e)
        found = self._verifiers.get(keycard.username)
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
    (scrypt, with a cost within L{twisted_keycard._scrypt}'s bounds), the
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
