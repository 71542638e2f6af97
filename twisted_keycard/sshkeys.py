"""
Public-key signature keycards, SSH style: the bouncer sends a nonce, the
client signs it (with the exchange's context) with its private key, and the
bouncer checks the signature against the client's keys in OpenSSH
C{authorized_keys} format (Ed25519, ECDSA, RSA).  No shared secret is kept
on the server.

Key files hold C{name ssh-ed25519 AAAA... [comment]} lines: the OpenSSH
public key line, prefixed by the avatar name it logs in as.  The strcred
name is C{sshkeys:FILE}.
"""

from __future__ import annotations

import secrets
from base64 import b64decode, b64encode
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
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
from twisted_keycard.keycard._nonceexchange import NonceExchange, exchangeContext
from twisted_keycard.keycard._selfverifying import requestVerified

LABEL = b"twisted-keycard ssh signature v1"
NONCE_BYTES = 32
MIN_RSA_BITS = 2048

PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@registerKeycard
@attrs.define(slots=False, eq=False, kw_only=True)
class SSHKeycard(Keycard):
    """
    A keycard proved with a signature.

    @ivar name: the avatar name the client logs in as.
    @ivar nonce: the bouncer's challenge (base64).
    @ivar signature: the client's signature (base64).
    """

    keycardType = "twisted_keycard.ssh-signature"

    name: str | None = wireField(str, NAME_LENGTH, setBy="client")
    nonce: str | None = wireField(str, 64, setBy="bouncer")
    signature: str | None = wireField(str, 2048, setBy="client")

    def account(self) -> str | None:
        return self.name


def context(name: str, nonce: str, keycardId: str, requesterName: str | None) -> bytes:
    """
    What the client signs (see L{exchangeContext}).
    """
    return exchangeContext(LABEL, name, nonce, keycardId, requesterName)


def signWith(key: PrivateKey, message: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(hashes.SHA256()))
    return key.sign(message, padding.PKCS1v15(), hashes.SHA256())


def verifyWith(key: PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def parseAuthorizedKeys(text: str) -> ParsedEntries[list[PublicKey]]:
    """
    Parse C{name keytype base64 [comment]} lines, leaving out bad ones.

    @return: the keys by name, and a problem naming the line number of each
        bad line.
    """
    keys: dict[str, list[PublicKey]] = {}

    def add(line: str) -> None:
        name, _, publicLine = line.strip().partition(" ")
        try:
            key = serialization.load_ssh_public_key(publicLine.strip().encode())
        except (ValueError, TypeError, IndexError):
            raise ValueError("expected name and an OpenSSH public key") from None
        if not isinstance(
            key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey
        ):
            raise ValueError("only Ed25519, ECDSA and RSA keys are taken")
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA keys need at least {MIN_RSA_BITS} bits")
        keys.setdefault(name, []).append(key)

    problems = parseLines(text, add)
    return ParsedEntries(keys, problems)


def readAuthorizedKeys(text: str) -> dict[str, list[PublicKey]]:
    """
    Parse C{name keytype base64 [comment]} lines.

    @raise ValueError: naming the line number of a bad line.
    """
    return parseAuthorizedKeys(text).strict()


class ISSHExchange(IExchange):
    """
    A signature exchange on the bouncer's side.
    """


@attrs.frozen
class SignatureProofCheck:
    """
    Checks a client's signature against its public keys (one nobody holds
    for an unknown name: the same refusal as a bad signature).
    """

    label: ClassVar[bytes] = LABEL
    keycardClass: ClassVar[type[SSHKeycard]] = SSHKeycard

    keys: Sequence[PublicKey] = attrs.field(repr=False)

    def read(self, keycard: Keycard) -> bytes:
        if not isinstance(keycard, SSHKeycard) or keycard.signature is None:
            raise ProtocolError("no signature")
        try:
            return b64decode(keycard.signature, validate=True)
        except ValueError:
            raise ProtocolError("signature is not base64") from None

    def accepts(self, context: bytes, proof: bytes) -> bool:
        return any(verifyWith(k, proof, context) for k in self.keys)


@implementer(ISSHExchange)
class SSHExchange(NonceExchange):
    """
    The bouncer's side: the nonce it sent and a L{SignatureProofCheck}.
    """


@implementer(ICredentialsChecker, IChallenger)
class SSHKeys:
    """
    Checks signature keycards against authorized keys per avatar name.
    """

    credentialInterfaces = (ISSHExchange,)
    keycardClasses = (SSHKeycard,)

    def __init__(
        self,
        keys: Mapping[str, Sequence[PublicKey]],
        *,
        randomBytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._keys: WatchedEntries[list[PublicKey]] = WatchedEntries(
            {name: list(k) for name, k in keys.items()}
        )
        self._random = randomBytes
        # An unknown name is checked against a key nobody holds: the same
        # work and the same refusal as a bad signature.
        self._mock: list[PublicKey] = [
            ed25519.Ed25519PrivateKey.generate().public_key()
        ]

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
        (see L{WatchedEntries}; C{clock} and C{runInThread} as there).

        @raise OSError: if the file cannot be read.
        """
        keys = cls({})
        keys._keys = WatchedEntries(
            {}, path, parseAuthorizedKeys, clock=clock, runInThread=runInThread
        )
        return keys

    def prime(self, keycard: Keycard) -> Deferred[IExchange]:
        if not isinstance(keycard, SSHKeycard) or not keycard.name:
            return fail(ProtocolError("no name"))
        nonce = b64encode(self._random(NONCE_BYTES)).decode("ascii")
        keys = self._keys.get(keycard.name) or self._mock
        return succeed(SSHExchange(keycard.name, nonce, SignatureProofCheck(keys)))

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        return requestVerified(credentials, SSHExchange, lambda e: e.name)


@implementer(IAnswerer)
class SSHAnswerer:
    """
    The client side: signs the bouncer's nonce with a private key, for
    example one loaded with L{loadPrivateKey}.
    """

    keycardClass = SSHKeycard

    def __init__(self, name: str, key: PrivateKey) -> None:
        self.name = name
        self._key = key

    def __repr__(self) -> str:
        return f"<SSHAnswerer {self.name!r}>"

    def start(self) -> Keycard:
        return SSHKeycard(name=self.name)

    def answer(self, keycard: Keycard) -> Keycard:
        if not isinstance(keycard, SSHKeycard) or not keycard.nonce or not keycard.id:
            raise ProtocolError("no challenge to answer")
        message = context(self.name, keycard.nonce, keycard.id, keycard.requesterName)
        keycard.signature = b64encode(signWith(self._key, message)).decode("ascii")
        return keycard

    def finish(self, keycard: Keycard) -> None:
        if not isinstance(keycard, SSHKeycard):
            raise ServerAuthenticationFailed("the server answered with another kind")


def loadPrivateKey(data: bytes, password: bytes | None = None) -> PrivateKey:
    """
    Load an OpenSSH (or PEM) private key.

    @raise ValueError: for a key that is not Ed25519, ECDSA or RSA.
    """
    try:
        key = serialization.load_ssh_private_key(data, password)
    except ValueError:
        key = serialization.load_pem_private_key(data, password)  # type: ignore[assignment]
    if not isinstance(
        key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    ):
        raise ValueError("only Ed25519, ECDSA and RSA keys are taken")
    return key
