"""
Public-key signature keycards, SSH style: the bouncer sends a nonce, the
client signs it (with the exchange's context) with its private key, and the
bouncer checks the signature against the client's keys in OpenSSH
C{authorized_keys} format (Ed25519, ECDSA, RSA).  No shared secret is kept
on the server.

Key files hold C{name [options] ssh-ed25519 AAAA... [comment]} lines: an
OpenSSH C{authorized_keys} line prefixed by the avatar name it logs in as,
with the options described in L{twisted_keycard._authorizedkeys}
(C{from=}, C{cert-authority}, C{principals=}, and session options taken as
no-ops).  A client may present an OpenSSH user certificate signed by a CA
that a C{cert-authority} line trusts for its name (see
L{twisted_keycard._sshcertificate}).  The strcred name is C{sshkeys:FILE}.
"""

from __future__ import annotations

import secrets
from base64 import b64decode, b64encode
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
from cryptography.hazmat.primitives.serialization.ssh import SSHCertificate
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from twisted_keycard._authorizedkeys import (
    MIN_RSA_BITS,
    AuthorizedKey,
    PublicKey,
    parseAuthorizedKeys,
    readAuthorizedKeys,
)
from twisted_keycard._entriesfile import ParsedEntries, WatchedEntries
from twisted_keycard._fileversion import RunInThread, globalClock
from twisted_keycard._mocks import WithMocks, mocksOf
from twisted_keycard._sshcertificate import (
    CERTIFICATE_LENGTH,
    CertificateRefused,
    certificateOf,
    certifiedKey,
    loadCertificate,
)
from twisted_keycard._sshmockkeys import KeyKind, MockKeys
from twisted_keycard._sshsignature import (
    PrivateKey,
    loadPrivateKey,
    signWith,
    verifyWith,
)
from twisted_keycard.error import ProtocolError, ServerAuthenticationFailed
from twisted_keycard.keycard._interfaces import IAnswerer, IChallenger, IExchange
from twisted_keycard.keycard._keycard import (
    NAME_LENGTH,
    Keycard,
    registerKeycard,
    wireField,
)
from twisted_keycard.keycard._nonceexchange import NonceExchange, exchangeContext
from twisted_keycard.keycard._selfverifying import requestVerified

LABEL = b"twisted-keycard ssh signature v1"
NONCE_BYTES = 32

__all__ = [
    "LABEL",
    "MIN_RSA_BITS",
    "AuthorizedKey",
    "ISSHExchange",
    "PrivateKey",
    "PublicKey",
    "SSHAnswerer",
    "SSHExchange",
    "SSHKeycard",
    "SSHKeys",
    "SignatureProofCheck",
    "context",
    "loadPrivateKey",
    "parseAuthorizedKeys",
    "readAuthorizedKeys",
    "signWith",
    "verifyWith",
]


@registerKeycard
@attrs.define(slots=False, eq=False, kw_only=True)
class SSHKeycard(Keycard):
    """
    A keycard proved with a signature.

    @ivar name: the avatar name the client logs in as.
    @ivar nonce: the bouncer's challenge (base64).
    @ivar signature: the client's signature (base64).
    @ivar certificate: the client's OpenSSH certificate for its key, in
        C{*-cert.pub} one-line form, if it logs in with one.
    """

    keycardType = "twisted_keycard.ssh-signature"

    name: str | None = wireField(str, NAME_LENGTH, setBy="client")
    nonce: str | None = wireField(str, 64, setBy="bouncer")
    signature: str | None = wireField(str, 2048, setBy="client")
    certificate: str | None = wireField(str, CERTIFICATE_LENGTH, setBy="client")

    def account(self) -> str | None:
        return self.name


def context(name: str, nonce: str, keycardId: str, requesterName: str | None) -> bytes:
    """
    What the client signs (see L{exchangeContext}).
    """
    return exchangeContext(LABEL, name, nonce, keycardId, requesterName)


class ISSHExchange(IExchange):
    """
    A signature exchange on the bouncer's side.
    """


@attrs.frozen
class SignatureProofCheck:
    """
    Checks a client's signature against its public keys, and against mock
    keys nobody holds whose results are not taken, so that every name (an
    unknown one has no keys) costs the same work and gets the same refusal
    as a bad signature (see L{twisted_keycard._sshmockkeys}).
    """

    label: ClassVar[bytes] = LABEL
    keycardClass: ClassVar[type[SSHKeycard]] = SSHKeycard

    keys: Sequence[PublicKey] = attrs.field(repr=False)
    padding: Sequence[PublicKey] = attrs.field(default=(), repr=False)

    def read(self, keycard: Keycard) -> bytes:
        if not isinstance(keycard, SSHKeycard) or keycard.signature is None:
            raise ProtocolError("no signature")
        try:
            return b64decode(keycard.signature, validate=True)
        except ValueError:
            raise ProtocolError("signature is not base64") from None

    def accepts(self, context: bytes, proof: bytes) -> bool:
        # Every key is checked, none skipped after a match.
        good = [verifyWith(k, proof, context) for k in self.keys]
        for mock in self.padding:
            verifyWith(mock, proof, context)
        return any(good)


@implementer(ISSHExchange)
class SSHExchange(NonceExchange):
    """
    The bouncer's side: the nonce it sent and a L{SignatureProofCheck}.
    """


@implementer(ICredentialsChecker, IChallenger)
class SSHKeys:
    """
    Checks signature keycards against authorized keys and certificate
    authorities per avatar name.
    """

    credentialInterfaces = (ISSHExchange,)
    keycardClasses = (SSHKeycard,)
    log = Logger()

    def __init__(
        self,
        keys: Mapping[str, Sequence[PublicKey | AuthorizedKey]],
        *,
        randomBytes: Callable[[int], bytes] = secrets.token_bytes,
        clock: IReactorTime | None = None,
    ) -> None:
        """
        @param keys: by avatar name, public keys or lines of a keys file
            (see L{readAuthorizedKeys}).
        @param clock: the time certificates must be valid at; the global
            reactor's by default.
        """
        self._keys: WatchedEntries[list[AuthorizedKey]] = WatchedEntries(
            {name: [_authorized(k) for k in ks] for name, ks in keys.items()}
        )
        self._random = randomBytes
        self._clock = clock
        self._madeMocks: dict[KeyKind, PublicKey] = {}
        self._mocks = MockKeys.of(self._keys.current(), self._madeMocks)

    @classmethod
    def fromFile(
        cls,
        path: str | Path,
        *,
        clock: IReactorTime | None = None,
        runInThread: RunInThread | None = None,
    ) -> SSHKeys:
        """
        Read a keys file; it is read again, in a thread, when it changes
        (see L{WatchedEntries}; C{runInThread} as there, C{clock} as for
        L{SSHKeys}).

        @raise OSError: if the file cannot be read.
        """
        keys = cls({}, clock=clock)
        keys._keys = WatchedEntries(
            {}, path, keys._parse, clock=clock, runInThread=runInThread
        )
        return keys

    def _parse(self, text: str) -> ParsedEntries[list[AuthorizedKey]]:
        parsed = parseAuthorizedKeys(text)
        mocks = MockKeys.of(parsed.entries, self._madeMocks)
        return ParsedEntries(WithMocks(parsed.entries, mocks), parsed.problems)

    def prime(self, keycard: Keycard) -> Deferred[IExchange]:
        """
        Start an exchange, once a changed keys file is read again.
        """
        return self._keys.ready().addCallback(lambda _: self._prime(keycard))

    def _prime(self, keycard: Keycard) -> Deferred[IExchange]:
        if not isinstance(keycard, SSHKeycard) or not keycard.name:
            return fail(ProtocolError("no name"))
        certificate = None
        if keycard.certificate is not None:
            try:
                certificate = loadCertificate(keycard.certificate)
            except ValueError as e:
                return fail(ProtocolError(str(e)))
        nonce = b64encode(self._random(NONCE_BYTES)).decode("ascii")
        lines = self._keys.get(keycard.name) or []
        mocks = mocksOf(self._keys.current(), self._mocks)
        if certificate is None:
            # Prepared when the file was read: the same steps for any name.
            keys, padding = mocks.select(keycard.name, keycard.address)
        else:
            keys = self._certified(certificate, lines, keycard)
            padding = mocks.padding(keys)
        check = SignatureProofCheck(keys, padding)
        return succeed(SSHExchange(keycard.name, nonce, check))

    def _certified(
        self,
        certificate: SSHCertificate,
        lines: list[AuthorizedKey],
        keycard: SSHKeycard,
    ) -> list[PublicKey]:
        assert keycard.name is not None
        now = (self._clock or globalClock()).seconds()
        try:
            return [
                certifiedKey(certificate, lines, keycard.name, keycard.address, now)
            ]
        except CertificateRefused as e:
            self.log.info(
                "certificate for {name!r} from {address} refused: {reason}",
                name=keycard.name,
                address=keycard.address,
                reason=str(e),
            )
            return []

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        return requestVerified(credentials, SSHExchange, lambda e: e.name)


def _authorized(key: PublicKey | AuthorizedKey) -> AuthorizedKey:
    return key if isinstance(key, AuthorizedKey) else AuthorizedKey(key)


@implementer(IAnswerer)
class SSHAnswerer:
    """
    The client side: signs the bouncer's nonce with a private key, for
    example one loaded with L{loadPrivateKey}, and presents the key's
    certificate if it has one.
    """

    keycardClass = SSHKeycard

    def __init__(
        self, name: str, key: PrivateKey, certificate: str | bytes | None = None
    ) -> None:
        """
        @param certificate: an OpenSSH certificate of C{key} (the content
            of its C{*-cert.pub} file).
        @raise ValueError: if C{certificate} is not a certificate of C{key}.
        """
        self.name = name
        self._key = key
        self._certificate = None
        if certificate is not None:
            self._certificate = certificateOf(certificate, key.public_key())

    def __repr__(self) -> str:
        return f"<SSHAnswerer {self.name!r}>"

    def start(self) -> Keycard:
        return SSHKeycard(name=self.name, certificate=self._certificate)

    def answer(self, keycard: Keycard) -> Keycard:
        if not isinstance(keycard, SSHKeycard) or not keycard.nonce or not keycard.id:
            raise ProtocolError("no challenge to answer")
        message = context(self.name, keycard.nonce, keycard.id, keycard.requesterName)
        keycard.signature = b64encode(signWith(self._key, message)).decode("ascii")
        return keycard

    def finish(self, keycard: Keycard) -> None:
        if not isinstance(keycard, SSHKeycard):
            raise ServerAuthenticationFailed("the server answered with another kind")
