"""
Public-key signature keycards, SSH style: the bouncer sends a nonce, the
client signs it with its private key, the bouncer checks the signature
against the client's authorized keys (OpenSSH's format).  No shared secret
is stored.  What each key type signs with, and the keys nobody holds that
an unknown name's signature is checked against, so that its refusal looks
like any other.
"""

from __future__ import annotations

import os
import secrets
from base64 import b64decode, b64encode
from collections import Counter
from collections.abc import Callable, Collection, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization.ssh import SSHCertificate
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from twisted_keycard._files import (
    ParsedEntries,
    RunInThread,
    WatchedEntries,
    globalClock,
)
from twisted_keycard._mocks import WithMocks, mocksOf
from twisted_keycard.error import ProtocolError, ServerAuthenticationFailed
from twisted_keycard.keycard import (
    NAME_LENGTH,
    IAnswerer,
    IChallenger,
    IExchange,
    Keycard,
    NonceExchange,
    WireSteps,
    exchangeContext,
    registerKeycard,
    requestVerified,
    wireField,
)
from twisted_keycard.sshkeys._authorizedkeys import (
    CERTIFICATE_LENGTH,
    IGNORABLE_OPTIONS,
    SK_USER_PRESENT,
    SK_USER_VERIFIED,
    AuthorizedKey,
    CertificateRefused,
    PublicKey,
    SecurityKey,
    certificateOf,
    certifiedKey,
    loadCertificate,
    parseAuthorizedKeys,
)

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def signWith(key: PrivateKey, message: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(hashes.SHA256()))
    return key.sign(message, padding.PKCS1v15(), hashes.SHA256())


def verifyWith(key: PublicKey, signature: bytes, message: bytes) -> bool:
    """
    Whether C{signature} is C{key}'s of C{message}.  The work depends on
    the key's kind and the signature, never on which key of that kind it
    is (see L{_rsaInRange}).
    """
    try:
        if isinstance(key, SecurityKey):
            return _verifySecurityKey(key, signature, message)
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            inRange, signature = _rsaInRange(key, signature)
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
            return inRange
    except InvalidSignature:
        return False
    return True


def _verifySecurityKey(key: SecurityKey, signature: bytes, message: bytes) -> bool:
    """
    A security key's signature: 64 bytes of Ed25519 signature, the flags
    byte and the 4-byte counter, over the authenticator's data; the flags
    must show what the key's line requires (a touch, unless
    C{no-touch-required}; a verified user with C{verify-required}).

    @raise InvalidSignature: if it does not verify.
    """
    if len(signature) != 69:
        raise InvalidSignature()
    flags, counter = signature[64], signature[65:]
    key.key.verify(signature[:64], key.signed(flags, counter, message))
    touched = bool(flags & SK_USER_PRESENT) or not key.touch
    verified = bool(flags & SK_USER_VERIFIED) or not key.verified
    return touched and verified


def _rsaInRange(key: rsa.RSAPublicKey, signature: bytes) -> tuple[bool, bytes]:
    """
    OpenSSL refuses at once a signature not below the key's modulus, so a
    stranger who knows a user's public key could send one just below it
    and tell the user's key (checked) from a mock key (refused at once).
    Such a signature is reduced, checked all the same, and refused.

    @return: whether C{signature} is below the modulus, and the signature
        to check.
    """
    modulus = key.public_numbers().n
    value = int.from_bytes(signature, "big")
    if value < modulus:
        return True, signature
    return False, (value % modulus).to_bytes(len(signature), "big")


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


#: A kind of key: its type and size (the curve's for ECDSA).  Checks of
#: keys of one kind cost the same.
KeyKind = tuple[str, int]

ED25519: KeyKind = ("ed25519", 256)
SK_KIND: KeyKind = ("sk-ed25519", 256)


def keyKind(key: PublicKey) -> KeyKind:
    """
    The kind of C{key}.
    """
    if isinstance(key, SecurityKey):
        return SK_KIND
    if isinstance(key, ed25519.Ed25519PublicKey):
        return ED25519
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ("ecdsa", key.key_size)
    return ("rsa", key.key_size)


_CURVES = {c.key_size: c for c in (ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1())}


def mockKeyOf(kind: KeyKind) -> PublicKey:
    """
    A new key of C{kind} whose private key nobody has: for RSA a random
    modulus of the size (no one knows its factors; checking against it
    costs what checking against a real key of that size costs).

    @raise ValueError: for a kind the keys file does not take.
    """
    name, size = kind
    if kind == ED25519:
        return ed25519.Ed25519PrivateKey.generate().public_key()
    if kind == SK_KIND:
        return SecurityKey(ed25519.Ed25519PrivateKey.generate().public_key(), b"ssh:")
    if name == "ecdsa" and size in _CURVES:
        return ec.generate_private_key(_CURVES[size]).public_key()
    if name == "rsa" and size >= 1024:
        modulus = secrets.randbits(size) | (1 << (size - 1)) | 1
        return rsa.RSAPublicNumbers(65537, modulus).public_key()
    raise ValueError(f"no mock key of kind {kind!r}")


@attrs.frozen
class NameKeys:
    """
    What one name's login is checked against, made when the file is read,
    so that a login does the same few steps for every name, known or not.

    @ivar keys: the name's keys taken from any address at any time.
    @ivar padding: mock keys, so that with C{keys} and C{restricted} every
        kind has its count.
    @ivar restricted: the name's keys with C{from=} or C{expiry-time=},
        each with a mock key of its kind to check instead when the client's
        address is not allowed or the line has expired.
    """

    keys: tuple[PublicKey, ...] = attrs.field(repr=False)
    padding: tuple[PublicKey, ...] = attrs.field(repr=False)
    restricted: tuple[tuple[AuthorizedKey, PublicKey], ...] = attrs.field(repr=False)

    def select(
        self, address: str | None, now: float
    ) -> tuple[list[PublicKey], list[PublicKey]]:
        """
        The keys whose check counts for a client at C{address} at time
        C{now}, and the mock keys to check besides them.
        """
        keys, padding = list(self.keys), list(self.padding)
        for line, mock in self.restricted:
            if line.allows(address, now):
                keys.append(line.key)
            else:
                padding.append(mock)
        return keys, padding


@attrs.frozen
class MockKeys:
    """
    How many keys of each kind every login is checked against, a mock key
    of each kind, and what each name's login is checked against.

    @ivar counts: by kind, the most keys of that kind one name has (one
        Ed25519 key for a file without keys).
    @ivar keys: by kind, a key nobody holds.
    @ivar names: by name, its L{NameKeys}.
    @ivar unknown: the L{NameKeys} of a name not in the file: only mock
        keys.
    """

    counts: Mapping[KeyKind, int]
    keys: Mapping[KeyKind, PublicKey] = attrs.field(repr=False)
    names: Mapping[str, NameKeys] = attrs.field(repr=False)
    unknown: NameKeys = attrs.field(repr=False)

    @classmethod
    def of(
        cls,
        entries: Mapping[str, Sequence[AuthorizedKey]],
        made: MutableMapping[KeyKind, PublicKey],
    ) -> MockKeys:
        """
        The counts of a file whose names have the lines of C{entries}
        (C{cert-authority} lines do not count: they check certificates, not
        signatures).

        @param made: mock keys made before, by kind; new ones are added to
            it, so a file read again makes only keys of new kinds.
        """
        signing = {
            name: [a for a in lines if not a.certAuthority]
            for name, lines in entries.items()
        }
        counts: dict[KeyKind, int] = {}
        for lines in signing.values():
            for kind, count in Counter(keyKind(a.key) for a in lines).items():
                counts[kind] = max(count, counts.get(kind, 0))
        if not counts:
            counts[ED25519] = 1
        for kind in counts:
            if kind not in made:
                made[kind] = mockKeyOf(kind)
        keys = {kind: made[kind] for kind in counts}
        # Names with keys of the same kinds share one padding.
        paddings: dict[frozenset[tuple[KeyKind, int]], tuple[PublicKey, ...]] = {}

        def nameKeys(lines: Sequence[AuthorizedKey]) -> NameKeys:
            have = Counter(keyKind(a.key) for a in lines)
            padding = paddings.setdefault(
                frozenset(have.items()), tuple(_padding(counts, keys, have))
            )
            return NameKeys(
                tuple(a.key for a in lines if not a.limited),
                padding,
                tuple((a, keys[keyKind(a.key)]) for a in lines if a.limited),
            )

        return cls(
            counts,
            keys,
            {name: nameKeys(lines) for name, lines in signing.items()},
            nameKeys(()),
        )

    def select(
        self, name: str, address: str | None, now: float
    ) -> tuple[list[PublicKey], list[PublicKey]]:
        """
        The keys whose check counts for C{name} from C{address} at time
        C{now} (none for a name not in the file), and the mock keys to
        check besides them.
        """
        return self.names.get(name, self.unknown).select(address, now)

    def padding(self, keys: Sequence[PublicKey]) -> list[PublicKey]:
        """
        The mock keys to check besides C{keys}, so that every kind has its
        count.
        """
        return _padding(self.counts, self.keys, Counter(keyKind(k) for k in keys))


def _padding(
    counts: Mapping[KeyKind, int],
    mocks: Mapping[KeyKind, PublicKey],
    have: Mapping[KeyKind, int],
) -> list[PublicKey]:
    return [
        mock
        for kind, mock in mocks.items()
        for _ in range(counts[kind] - have.get(kind, 0))
    ]


LABEL = b"twisted-keycard ssh signature v1"
NONCE_BYTES = 32


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
    # The client signs the keycard id and the requester with the nonce.
    steps = WireSteps(
        first=("name", "certificate"),
        challenge=("id", "requesterName", "nonce"),
        answer=("signature",),
    )

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
    as a bad signature (see L{twisted_keycard.sshkeys._keys}).
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
        randomBytes: Callable[[int], bytes] = os.urandom,
        clock: IReactorTime | None = None,
        ignoreOptions: Collection[str] = (),
    ) -> None:
        """
        @param keys: by avatar name, public keys or lines of a keys file
            (see L{readAuthorizedKeys}).
        @param clock: the time certificates and C{expiry-time=} lines must
            be valid at; the global reactor's by default.
        @param ignoreOptions: options (of
            L{twisted_keycard.sshkeys.IGNORABLE_OPTIONS}) that do not apply
            to keycard logins, so that lines of a keys file with them are
            taken (see L{twisted_keycard.sshkeys._authorizedkeys}).
        @raise ValueError: for an option of C{ignoreOptions} that cannot be
            ignored.
        """
        unknown = sorted(set(ignoreOptions) - IGNORABLE_OPTIONS)
        if unknown:
            raise ValueError(
                f"cannot ignore option {', '.join(unknown)}: only"
                f" {', '.join(sorted(IGNORABLE_OPTIONS))} can be ignored"
            )
        self._ignore = frozenset(ignoreOptions)
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
        ignoreOptions: Collection[str] = (),
    ) -> SSHKeys:
        """
        Read a keys file; it is read again, in a thread, when it changes
        (see L{WatchedEntries}; C{runInThread} as there, C{clock} and
        C{ignoreOptions} as for L{SSHKeys}).

        @raise OSError: if the file cannot be read.
        """
        keys = cls({}, clock=clock, ignoreOptions=ignoreOptions)
        keys._keys = WatchedEntries(
            {}, path, keys._parse, clock=clock, runInThread=runInThread
        )
        return keys

    def _parse(self, text: str) -> ParsedEntries[list[AuthorizedKey]]:
        parsed = parseAuthorizedKeys(text, self._ignore)
        mocks = MockKeys.of(parsed.entries, self._madeMocks)
        return ParsedEntries(WithMocks(parsed.entries, mocks), parsed.problems)

    def prime(self, keycard: Keycard) -> Deferred[IExchange]:
        """
        Start an exchange, once a changed keys file is read again.
        """
        return self._keys.whenCurrent(lambda: self._prime(keycard))

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
        lines = self._keys.current().get(keycard.name) or []
        mocks = mocksOf(self._keys.current(), self._mocks)
        now = (self._clock or globalClock()).seconds()
        if certificate is None:
            # Prepared when the file was read: the same steps for any name.
            keys, padding = mocks.select(keycard.name, keycard.address, now)
        else:
            keys = self._certified(certificate, lines, keycard, now)
            padding = mocks.padding(keys)
        check = SignatureProofCheck(keys, padding)
        return succeed(SSHExchange(keycard.name, nonce, check))

    def _certified(
        self,
        certificate: SSHCertificate,
        lines: list[AuthorizedKey],
        keycard: SSHKeycard,
        now: float,
    ) -> list[PublicKey]:
        assert keycard.name is not None
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
