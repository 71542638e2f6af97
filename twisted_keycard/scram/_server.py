"""
The bouncer's side of SCRAM-SHA-256: a twisted.cred checker that also
primes the challenge, from verifiers in PostgreSQL's format.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from ..error import KeycardRefused, ProtocolError
from ..interfaces import IChallenger, IExchange
from ..keycard import Keycard
from ._keycard import SCRAMKeycard
from ._messages import ClientFinal, ClientFirst, ServerFirst, b64
from ._verifier import DEFAULT_ITERATIONS, SALT_BYTES, Verifier, hmacSha256, xor

#: Random bytes the server adds to the client's nonce.
SERVER_NONCE_BYTES = 18


class ISCRAMExchange(IExchange):
    """
    A SCRAM-SHA-256 exchange on the bouncer's side.
    """


@implementer(ISCRAMExchange)
@attrs.define
class SCRAMExchange:
    """
    Everything the bouncer sent and must compare later, kept on its side.

    @ivar known: whether the user exists; a mock exchange fails at the
        check, after the same work.
    """

    first: ClientFirst
    serverFirst: ServerFirst
    verifier: Verifier = attrs.field(repr=False)
    known: bool
    final: ClientFinal | None = None
    checked: bool = False
    serverSignature: bytes | None = attrs.field(default=None, repr=False)

    @property
    def username(self) -> str:
        return self.first.username

    def challenge(self, keycard: Keycard) -> bool:
        assert isinstance(keycard, SCRAMKeycard)
        keycard.serverFirst = self.serverFirst.format()
        return True

    def answer(self, keycard: Keycard) -> None:
        if self.final is not None:
            raise ProtocolError("this exchange was answered already")
        if not isinstance(keycard, SCRAMKeycard) or keycard.clientFinal is None:
            raise ProtocolError("no client-final message")
        final = ClientFinal.parse(keycard.clientFinal)
        expected = b64(self.first.gs2Header.encode("ascii"))
        if not hmac.compare_digest(final.channelBinding, expected):
            raise ProtocolError("channel binding does not match")
        if not hmac.compare_digest(final.nonce, self.serverFirst.nonce):
            raise ProtocolError("nonce does not match")
        self.final = final

    def conclude(self, keycard: Keycard) -> None:
        assert isinstance(keycard, SCRAMKeycard) and self.serverSignature is not None
        keycard.serverFinal = "v=" + b64(self.serverSignature)

    def verify(self) -> bool:
        """
        Check the client's proof against the stored key; once only.
        """
        if self.final is None or self.checked:
            raise ProtocolError("nothing to check")
        self.checked = True
        authMessage = ",".join(
            [self.first.bare, self.serverFirst.format(), self.final.withoutProof]
        ).encode("utf-8")
        signature = hmacSha256(self.verifier.storedKey, authMessage)
        proof = self.final.proof
        if len(proof) != len(signature):
            proof = bytes(len(signature))
        recovered = hashlib.sha256(xor(proof, signature)).digest()
        good = hmac.compare_digest(recovered, self.verifier.storedKey)
        self.serverSignature = hmacSha256(self.verifier.serverKey, authMessage)
        return good and self.known


@implementer(ICredentialsChecker, IChallenger)
class SCRAMVerifiers:
    """
    Checks SCRAM-SHA-256 keycards against stored verifiers.

    For an unknown user it primes a mock exchange: a salt stable per user
    name (from a secret key) and as long as real salts, the default
    iteration count, and the same failure as a wrong password.
    """

    credentialInterfaces = (ISCRAMExchange,)
    keycardClasses = (SCRAMKeycard,)

    def __init__(
        self,
        verifiers: Mapping[str, Verifier],
        *,
        iterations: int = DEFAULT_ITERATIONS,
        mockKey: bytes | None = None,
        randomBytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._verifiers = dict(verifiers)
        self.iterations = iterations
        self._mockKey = mockKey if mockKey is not None else secrets.token_bytes(32)
        self._random = randomBytes
        self._path: Path | None = None
        self._stamp: tuple[int, int] | None = None

    @classmethod
    def fromFile(cls, path: str | Path, **kwargs: Any) -> SCRAMVerifiers:
        """
        Read C{name:SCRAM-SHA-256$...} lines; blank lines and C{#} comments
        are skipped.  The file is read again when it changes.

        @raise ValueError: naming the line number of a bad line.
        """
        verifiers = cls({}, **kwargs)
        verifiers._path = Path(path)
        verifiers._reload()
        return verifiers

    def _reload(self) -> None:
        assert self._path is not None
        stat = os.stat(self._path)
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        self._verifiers = readVerifiers(self._path.read_text())
        self._stamp = stamp

    def _lookup(self, username: str) -> Verifier | None:
        if self._path is not None:
            self._reload()
        return self._verifiers.get(username)

    def prime(self, keycard: Keycard) -> Deferred[IExchange]:
        if not isinstance(keycard, SCRAMKeycard):
            return fail(ProtocolError("not a SCRAM keycard"))
        try:
            first = ClientFirst.parse(keycard.clientFirst)
        except ProtocolError as e:
            return fail(e)
        verifier = self._lookup(first.username)
        known = verifier is not None
        if verifier is None:
            verifier = self._mock(first.username)
        nonce = first.nonce + b64(self._random(SERVER_NONCE_BYTES))
        serverFirst = ServerFirst(nonce, verifier.salt, verifier.iterations)
        return succeed(SCRAMExchange(first, serverFirst, verifier, known))

    def _mock(self, username: str) -> Verifier:
        salt = hmacSha256(self._mockKey, username.encode("utf-8"))[:SALT_BYTES]
        return Verifier(self.iterations, salt, self._random(32), self._random(32))

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        if not isinstance(credentials, SCRAMExchange):
            return fail(KeycardRefused())
        try:
            good = credentials.verify()
        except ProtocolError as e:
            return fail(e)
        if not good:
            return fail(KeycardRefused())
        return succeed(credentials.username)


def readVerifiers(text: str) -> dict[str, Verifier]:
    """
    Parse a verifiers file.

    @raise ValueError: naming the line number of a bad line, never its text.
    """
    verifiers: dict[str, Verifier] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, verifier = line.partition(":")
        if not sep or not name:
            raise ValueError(f"line {number}: expected name:SCRAM-SHA-256$...")
        try:
            verifiers[name] = Verifier.fromString(verifier)
        except ValueError:
            raise ValueError(f"line {number}: not a SCRAM-SHA-256 verifier") from None
    return verifiers
