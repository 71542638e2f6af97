"""
Keycards: credentials that travel between processes over Perspective Broker,
and their exchanges.

A keycard is sent by a client, completed by a requester (which sets the
address it came from and its own name), challenged and checked by a bouncer,
and sent back.  Each subclass is the contract of one exchange.  Between a
client and a requester (keycard protocol 2) each message of an exchange
carries only the fields of its L{Step}, checked (type, length) before
anything reads them; a keycard that travels whole (to a bouncer in another
process) is always a new object, built only from the fields its class
declares with L{wireField}.  Client addresses are kept in one text form per
host, so that rules, limits and tokens compare like with like.

The interfaces of one kind are here too: the exchange (L{IExchange}), the
challenger that primes it and the client's answerer.  Every multi-step
exchange holds one L{ExchangeLifecycle}; the nonce exchanges (HMAC,
signatures) share one implementation, L{NonceExchange}.  And what one end
of a connection knows of the TLS under it: whether a client checked the
server's certificate, and the connection's channel binding data (RFC 5056).
"""

from __future__ import annotations

import binascii
import contextlib
import enum
import ipaddress
import json
import math
import re
import types
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Any, ClassVar, Protocol, TypeVar

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)
from twisted.cred.credentials import ICredentials
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import ISSLTransport
from twisted.spread import pb
from zope.interface import Attribute, Interface, implementer

from twisted_keycard.error import (
    ExchangeOutOfOrder,
    InsecureTransport,
    InvalidKeycard,
    KeycardRefused,
    ProtocolError,
)

#: RFC 9266: the TLS 1.3 exporter, label C{EXPORTER-Channel-Binding}, an
#: empty context, 32 bytes.
TLS_EXPORTER = "tls-exporter"
#: RFC 5929: a hash of the server's certificate.
TLS_SERVER_END_POINT = "tls-server-end-point"
#: The types this library computes, in a client's order of preference.
BINDING_TYPES = (TLS_EXPORTER, TLS_SERVER_END_POINT)

EXPORTER_LABEL = b"EXPORTER-Channel-Binding"
EXPORTER_BYTES = 32

#: Bytes of one binding at most (a SHA-512 certificate hash).
MAX_BINDING_BYTES = 64
#: Characters of the wire form at most.
BINDINGS_LENGTH = 256


def endPointHash(certificate: x509.Certificate) -> bytes | None:
    """
    The C{tls-server-end-point} data of a server certificate (RFC 5929,
    section 4.1): its DER form hashed with the hash of its signature
    algorithm, SHA-256 in place of MD5 or SHA-1.

    @return: the hash, or C{None} when the signature algorithm has no single
        hash (Ed25519, Ed448), for which RFC 5929 defines no binding.
    """
    try:
        algorithm = certificate.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None
    if algorithm is None:
        return None
    if isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(certificate.public_bytes(Encoding.DER))
    return digest.finalize()


def formatBindings(bindings: Mapping[str, bytes]) -> str:
    """
    The wire form of channel bindings: C{type=base64} items joined by
    C{","}, in the order of L{BINDING_TYPES}.
    """
    return ",".join(
        f"{kind}={binascii.b2a_base64(bindings[kind], newline=False).decode()}"
        for kind in BINDING_TYPES
        if kind in bindings
    )


def parseBindings(text: str) -> Mapping[str, bytes]:
    """
    Read the wire form of channel bindings (see L{formatBindings}).

    @raise ValueError: for an unknown or repeated type, or data that is not
        canonical base64 of 1 to L{MAX_BINDING_BYTES} bytes.
    """
    bindings: dict[str, bytes] = {}
    for item in text.split(","):
        kind, sep, encoded = item.partition("=")
        if not sep or kind not in BINDING_TYPES or kind in bindings:
            raise ValueError("unknown or repeated channel binding type")
        try:
            data = binascii.a2b_base64(encoded, strict_mode=True)
        except binascii.Error:
            raise ValueError("channel binding data is not base64") from None
        canonical = binascii.b2a_base64(data, newline=False).decode()
        if canonical != encoded or not 0 < len(data) <= MAX_BINDING_BYTES:
            raise ValueError("channel binding data is not canonical")
        bindings[kind] = data
    return bindings


@attrs.frozen
class ClientChannel:
    """
    What a client knows of the connection it logs in over, for an exchange
    that can bind to it.

    @ivar bindings: the channel binding data of this connection, by type;
        empty without TLS.
    @ivar serverBinds: whether the server said it binds this kind of
        exchange to the channel (it listed the kind's C{channelBoundType});
        C{None} when the client did not ask.
    """

    bindings: Mapping[str, bytes] = attrs.field(factory=dict, repr=False)
    serverBinds: bool | None = None


#: The one TLS version whose exporter RFC 9266 binds to.
_TLS13 = "TLSv1.3"


def tlsConnection(transport: object) -> Any:
    """
    The pyOpenSSL connection under a TLS transport, or C{None} for a
    transport without TLS.
    """
    if transport is None or not ISSLTransport.providedBy(transport):
        return None
    getHandle = getattr(transport, "getHandle", None)
    if getHandle is None:
        return None
    handle = getHandle()
    return handle if hasattr(handle, "get_verify_mode") else None


def serverVerified(transport: object) -> bool:
    """
    Whether the client end of a connection checked the server: the
    connection is TLS, OpenSSL was told to verify the peer (C{VERIFY_PEER},
    so the handshake fails on a certificate chain its trust roots do not
    vouch for), and the server's certificate names the host the client
    asked for: the name it sent in SNI, or, for a host given as an IP
    address (no SNI), the address it is connected to.  The name is checked
    again here, so options that verify the chain but not the name (Twisted's
    C{ssl:} client endpoint without C{hostname=}) do not count.

    This is what Twisted's C{tls:} endpoint and C{optionsForClientTLS} do.
    """
    connection = tlsConnection(transport)
    if connection is None:
        return False
    if not connection.get_verify_mode() & SSL.VERIFY_PEER:
        return False
    peer = connection.get_peer_certificate()
    if peer is None:
        return False
    certificate = peer.to_cryptography()
    name = connection.get_servername()
    try:
        if name:
            verify_certificate_hostname(certificate, name.decode("ascii"))
        else:
            host = getattr(transport.getPeer(), "host", None)  # type: ignore[attr-defined]
            if not isinstance(host, str):
                return False
            verify_certificate_ip_address(certificate, host)
    except (CertificateError, VerificationError, ValueError, UnicodeError):
        return False
    return True


def channelBindings(transport: object, *, asServer: bool) -> dict[str, bytes]:
    """
    The channel binding data of a TLS connection, as this end computes it:
    C{tls-server-end-point} from the server's certificate (this end's own as
    the server, the peer's as the client) when its signature algorithm
    defines one, and C{tls-exporter} over TLS 1.3.

    @return: the data by type; empty without TLS or before the handshake.
    """
    connection = tlsConnection(transport)
    if connection is None:
        return {}
    bindings: dict[str, bytes] = {}
    certificate = (
        connection.get_certificate() if asServer else connection.get_peer_certificate()
    )
    if certificate is not None:
        endPoint = endPointHash(certificate.to_cryptography())
        if endPoint is not None:
            bindings[TLS_SERVER_END_POINT] = endPoint
    if connection.get_protocol_version_name() == _TLS13:
        # Fails only before the handshake: no exporter yet.
        with contextlib.suppress(SSL.Error):
            bindings[TLS_EXPORTER] = connection.export_keying_material(
                EXPORTER_LABEL, EXPORTER_BYTES, b""
            )
    return bindings


#: How a refusal to send over unverified TLS ends.
_VERIFY = (
    "needs TLS that verifies the server's certificate and host name"
    " (tls:HOST:PORT:trustRoots=DIR, or optionsForClientTLS)"
)


def checkSendable(keycard: Keycard, transport: object, towardBouncer: bool) -> None:
    """
    Refuse to send a keycard where a man in the middle could read what it
    must not show: toward the bouncer, a secret field only over TLS whose
    server the client verified (see L{serverVerified}), and a C{bearer}
    keycard not over TLS left unverified (plain TCP is a visible choice;
    unverified TLS only looks safe); toward the client, a secret field only
    over TLS.

    @raise InsecureTransport: if it may not be sent over C{transport}.
    """
    name = type(keycard).__name__
    if not towardBouncer:
        if keycard.carriesSecret(False) and not ISSLTransport.providedBy(transport):
            raise InsecureTransport(f"{name} carries a secret and needs TLS")
        return
    if keycard.carriesSecret(True):
        if not serverVerified(transport):
            raise InsecureTransport(f"{name} carries a secret and {_VERIFY}")
    elif (
        keycard.bearer
        and ISSLTransport.providedBy(transport)
        and not serverVerified(transport)
    ):
        raise InsecureTransport(f"{name} is a bearer credential and {_VERIFY}")


WIRE = "twisted_keycard.wire"

#: How many characters of a peer's bad field name to repeat in an error.
_NAME_ECHO = 40

#: Bytes of packed keycard state accepted from a peer, at most.
MAX_STATE = 16 * 1024

#: The values of L{wireField}'s C{setBy}.
SETTERS = (None, "client", "requester", "bouncer")


def _same(value: Any) -> Any:
    return value


@attrs.frozen
class Wire:
    """
    How one keycard field crosses the wire.

    @ivar kind: the Python type of the value on the wire: C{str}, C{int} or
        C{float} (a C{float} field also takes an C{int}); the state crosses
        as JSON, so bytes travel as text (base64, for instance).
    @ivar maxLength: the largest length of a C{str} or C{bytes} value.
    @ivar secret: the field holds a secret (a password) and may only be sent
        over TLS.
    @ivar encode: turns the local value into the wire value.
    @ivar decode: turns a checked wire value into the local value; raises
        L{ValueError} for a value it does not accept.
    @ivar setBy: who writes the field: C{"client"}, C{"requester"} or
        C{"bouncer"}; C{None} for both ends (C{id}, C{state}).  A field is
        sent only away from the side that writes it (see L{sentToward}).
    """

    kind: type
    maxLength: int | None = None
    secret: bool = False
    encode: Callable[[Any], Any] = _same
    decode: Callable[[Any], Any] = _same
    setBy: str | None = None

    def sentToward(self, towardBouncer: bool | None) -> bool:
        """
        Whether the field is sent in this direction: C{True} toward the
        bouncer, C{False} back toward the client, C{None} both.
        """
        if towardBouncer is None or self.setBy is None:
            return True
        return (self.setBy != "bouncer") is towardBouncer

    def toPB(self, value: object) -> object:
        """
        The form of a set value in a protocol 2 message (see L{Step}): its
        wire form, text as UTF-8 bytes.
        """
        encoded = self.encode(value)
        return encoded.encode("utf-8") if type(encoded) is str else encoded

    def fromPB(self, name: str, value: object) -> object:
        """
        Check a value received in a protocol 2 message and return its local
        form: text arrives as UTF-8 bytes (a C{str} is taken too).  Bytes
        that are not UTF-8 are read with U+FFFD in place of each bad
        sequence, as L{validText} does for a lone surrogate: valid text
        that no real account has, refused and counted as any other.

        @raise InvalidKeycard: as L{check}.
        """
        if type(value) is bytes and self.kind is str:
            value = value.decode("utf-8", "replace")
        return self.check(name, value)

    def check(self, name: str, value: object) -> object:
        """
        Check a value received from a peer and return its local form.

        @raise InvalidKeycard: if the value has the wrong type, is too long,
            or is not a finite number.
        """
        if value is None:
            return None
        kind = self.kind
        if kind is str and type(value) is str:
            # The common case, checked in the fewest steps.
            if self.maxLength is not None and len(value) > self.maxLength:
                raise InvalidKeycard(
                    f"field {name!r} is longer than {self.maxLength} characters"
                )
            value = validText(value)
            if self.decode is _same:
                return value
        if kind is float and type(value) is int:
            value = float(value)
        if type(value) is not kind:
            raise InvalidKeycard(
                f"field {name!r} must be {kind.__name__}, not {type(value).__name__}"
            )
        if isinstance(value, str | bytes):
            if self.maxLength is not None and len(value) > self.maxLength:
                raise InvalidKeycard(
                    f"field {name!r} is longer than {self.maxLength} characters"
                )
        elif isinstance(value, float) and not math.isfinite(value):
            raise InvalidKeycard(f"field {name!r} must be a finite number")
        try:
            return self.decode(value)
        except ValueError:
            raise InvalidKeycard(f"field {name!r} has a value it cannot take") from None


def wireField(
    kind: type,
    maxLength: int | None = None,
    *,
    default: Any = None,
    secret: bool = False,
    encode: Callable[[Any], Any] = _same,
    decode: Callable[[Any], Any] = _same,
    setBy: str | None = None,
) -> Any:
    """
    Declare an attrs field of a keycard that crosses the wire.

    @param setBy: who writes the field, C{"client"}, C{"requester"} or
        C{"bouncer"}: a keycard leaves it out when it travels toward that
        side, since that side wrote it and keeps its own copy.  C{None} (the
        default) sends it both ways.
    @return: an attrs field whose metadata holds a L{Wire}.
    """
    if kind not in (str, int, float):
        raise TypeError("a wire field is str, int or float")
    if setBy not in SETTERS:
        raise ValueError(f"setBy must be one of {SETTERS}, not {setBy!r}")
    wire = Wire(kind, maxLength, secret, encode, decode, setBy)
    return attrs.field(default=default, repr=not secret, metadata={WIRE: wire})


_fieldsByClass: dict[type, Mapping[str, Wire]] = {}


def wireFields(cls: type) -> Mapping[str, Wire]:
    """
    The wire fields of an attrs keycard class, by name (computed once per
    class).
    """
    fields = _fieldsByClass.get(cls)
    if fields is None:
        fields = _fieldsByClass[cls] = MappingProxyType(
            {f.name: f.metadata[WIRE] for f in attrs.fields(cls) if WIRE in f.metadata}
        )
    return fields


def packState(fields: Mapping[str, object]) -> bytes:
    """
    The wire form of a keycard's state: its set fields as a compact UTF-8
    JSON object.  One string crosses PB instead of a nested structure,
    which banana would decode item by item.
    """
    return _encodeJSON(fields).encode()


def unpackState(data: object) -> object:
    """
    Read a packed state; anything else is returned as it is, for
    L{checkState} to judge.

    @raise InvalidKeycard: for packed state that is too long or not JSON.
    """
    if not isinstance(data, bytes):
        return data
    if len(data) > MAX_STATE:
        raise InvalidKeycard(f"keycard state is longer than {MAX_STATE} bytes")
    try:
        return _decodeJSON(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidKeycard("keycard state is not a JSON object") from None


_SURROGATE = re.compile("[\ud800-\udfff]")


def validText(value: str) -> str:
    """
    C{value} with each lone surrogate replaced by U+FFFD.

    JSON can carry a lone surrogate (C{"\\ud800"}), but it is not text:
    no encoder takes it, so a user name holding one would fail wherever it
    is hashed, stored or logged.  Replaced, the name is valid text that no
    real account has (SASLprep even prohibits U+FFFD), and the login is
    refused, and counted, as any other.
    """
    if value.isascii():
        return value
    return _SURROGATE.sub("\ufffd", value)


def _noConstant(name: str) -> object:
    raise ValueError(name)


# Made once: json.dumps and json.loads build a new coder on every call that
# passes options.
_encodeJSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_decodeJSON = json.JSONDecoder(parse_constant=_noConstant).decode


def checkState(
    cls: type, fields: Mapping[str, Wire], state: object
) -> dict[str, object]:
    """
    Check the state a peer sent for a keycard of class C{cls}.

    @return: every declared field, by name, in its local form; fields the
        peer left out take their default.
    @raise InvalidKeycard: if C{state} is not a dictionary, or has a field
        C{fields} does not declare, or a bad value.
    """
    if not isinstance(state, dict):
        raise InvalidKeycard(f"{cls.__name__} state must be a dictionary")
    checked = _defaults(cls, fields)
    plain = _plainText(cls, fields)
    for key, value in state.items():
        limit = plain.get(key, _CHECK) if type(key) is str else _CHECK
        if limit != _CHECK and type(value) is str:
            # The common case: a text field with no decoder.
            if limit is not None and len(value) > limit:
                raise InvalidKeycard(f"field {key!r} is longer than {limit} characters")
            checked[key] = validText(value)
            continue
        if isinstance(key, bytes):
            key = key.decode("utf-8", "replace")
        wire = fields.get(key) if isinstance(key, str) else None
        if wire is None:
            shown = repr(key)[:_NAME_ECHO]
            raise InvalidKeycard(f"{cls.__name__} has no field {shown}")
        checked[key] = wire.check(key, value)
    return checked


#: Stands for "check this field with its L{Wire}" among length limits.
_CHECK = -1
_plainByClass: dict[type, dict[str, int | None]] = {}


def _plainText(cls: type, fields: Mapping[str, Wire]) -> dict[str, int | None]:
    """
    The length limit of each text field of C{cls} that has no decoder.
    """
    plain = _plainByClass.get(cls)
    if plain is None:
        plain = _plainByClass[cls] = {
            name: wire.maxLength
            for name, wire in fields.items()
            if wire.kind is str and wire.decode is _same
        }
    return plain


_defaultsByClass: dict[type, dict[str, object]] = {}


def _defaults(cls: type, fields: Mapping[str, Wire]) -> dict[str, object]:
    """
    A new dictionary of the default of every wire field of C{cls}.
    """
    defaults = _defaultsByClass.get(cls)
    if defaults is None:
        defaults = {}
        for f in attrs.fields(cls):
            if f.name in fields:
                default = f.default
                if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                    default = default.factory()
                defaults[f.name] = default
        _defaultsByClass[cls] = defaults
    return dict(defaults)


#: Length limits shared by the keycard classes.
ID_LENGTH = 64
NAME_LENGTH = 256
ADDRESS_LENGTH = 128
TOKEN_LENGTH = 4096


class Step(enum.Enum):
    """
    The messages of one exchange as a client and a requester exchange them
    (keycard protocol 2, see C{docs/protocol.rst}), in order: the client's
    L{FIRST} message, the bouncer's L{CHALLENGE}s and the client's
    L{ANSWER}s to them, and the bouncer's L{PROOF} on success.  Each carries
    only the fields its step needs, as a flat tuple of PB's own types.
    """

    FIRST = "first"
    CHALLENGE = "challenge"
    ANSWER = "answer"
    PROOF = "proof"


@attrs.frozen
class WireSteps:
    """
    The fields a keycard kind sends at each L{Step}, in order.  A value
    left unset is sent as C{None}; trailing C{None}s are left out.
    """

    first: tuple[str, ...] = ()
    challenge: tuple[str, ...] = ()
    answer: tuple[str, ...] = ()
    proof: tuple[str, ...] = ()

    def of(self, step: Step) -> tuple[str, ...]:
        """
        The fields of C{step}.
        """
        return getattr(self, step.value)  # type: ignore[no-any-return]


class KeycardState(enum.Enum):
    """
    Where a keycard is in its exchange.

    A keycard in a challenge round is L{REQUESTING} with its challenge fields
    set.
    """

    REQUESTING = "REQUESTING"
    AUTHENTICATED = "AUTHENTICATED"
    REFUSED = "REFUSED"


_registry: dict[str, type[Keycard]] = {}


def keycardClassFor(keycardType: str) -> type[Keycard] | None:
    """
    The keycard class registered for a wire type tag, if any.
    """
    return _registry.get(keycardType)


@implementer(ICredentials)
@attrs.define(slots=False, eq=False, kw_only=True)
class Keycard(pb.Copyable, pb.RemoteCopy):
    """
    Base class of keycards.

    Subclasses set L{keycardType}, a stable name that is the keycard's type
    tag on the wire (so moving a class to another module does not change the
    protocol), declare their own fields with L{wireField}, and are decorated
    with L{registerKeycard}.

    @ivar id: the exchange's id, issued by the bouncer; C{None} on the first
        message.
    @ivar state: a L{KeycardState}.
    @ivar avatarId: set by the bouncer on success; never taken from a client.
    @ivar requesterName: set by the requester that forwarded the keycard.
    @ivar bouncerName: set by the bouncer that checked it.
    @ivar duration: seconds the keycard stays valid, set by the bouncer.
    @ivar expires: POSIX time at which it expires, set by the bouncer.
    @ivar address: the client's address, set by the requester from the
        transport's peer; never taken from a client.
    @ivar token: a signed token, set by the bouncer on success.
    @ivar channelBindings: the channel binding data of the TLS connection
        the keycard came on, by type (see L{twisted_keycard.keycard._keycard}),
        set by the requester from its own side of the connection; never
        taken from a client.

    @cvar bearer: whether whoever reads the keycard in transit can log in
        with it (a token): such a keycard is not sent over TLS whose server
        was not verified.
    @cvar channelBoundType: the tag a requester lists beside
        C{keycardType} in C{keycardClasses()} when it gives the bouncer the
        connection's channel binding data, for kinds whose exchange binds
        to it (SCRAM-SHA-256-PLUS).
    @cvar kind: the kind's name in protocol 2 messages: C{keycardType}
        without its C{twisted_keycard.} prefix (set by L{registerKeycard}).
    @cvar steps: the fields each L{Step} carries; C{None} (the default)
        for the kind's own fields by who writes them: the client's in its
        first message and its answers, the bouncer's in its challenges and
        its proof.
    """

    keycardType: ClassVar[str] = "twisted_keycard.Keycard"
    kind: ClassVar[str] = "Keycard"
    bearer: ClassVar[bool] = False
    channelBoundType: ClassVar[str | None] = None
    steps: ClassVar[WireSteps | None] = None

    id: str | None = wireField(str, ID_LENGTH)
    state: KeycardState = wireField(
        str,
        16,
        default=KeycardState.REQUESTING,
        encode=lambda s: s.value,
        decode=KeycardState,
    )
    avatarId: str | None = wireField(str, NAME_LENGTH, setBy="bouncer")
    requesterName: str | None = wireField(str, NAME_LENGTH)
    bouncerName: str | None = wireField(str, NAME_LENGTH, setBy="bouncer")
    duration: float | None = wireField(float, setBy="bouncer")
    expires: float | None = wireField(float, setBy="bouncer")
    address: str | None = wireField(str, ADDRESS_LENGTH, setBy="requester")
    token: str | None = wireField(str, TOKEN_LENGTH, setBy="bouncer")
    channelBindings: Mapping[str, bytes] | None = wireField(
        str,
        BINDINGS_LENGTH,
        setBy="requester",
        encode=formatBindings,
        decode=parseBindings,
    )
    wantsToken: int = wireField(int, default=1, setBy="requester")

    @classmethod
    def wireFields(cls) -> Mapping[str, Wire]:
        """
        The fields of this class that cross the wire, by name.
        """
        return wireFields(cls)

    def account(self) -> str | None:
        """
        The account this keycard claims, if its kind has one, for counting
        failed logins; a claim, not a proof.
        """
        return None

    def claimedName(self) -> str | None:
        """
        The account or avatar this keycard claims, for the bouncer's audit
        line only: its L{account} unless its kind says more (a token names
        its avatar).  A claim, not a proof, and never counted against: a
        peer may name anyone.
        """
        return self.account()

    def bindsChannel(self) -> bool:
        """
        Whether this message binds its exchange to the TLS channel (for
        kinds with a C{channelBoundType}): a requester that cannot give the
        binding data answers a first message that does with its kinds.
        """
        return False

    def message(self, step: Step) -> tuple[object, ...]:
        """
        What this side sends at C{step}: the step's fields (see L{steps}),
        each in its PB form, trailing unset ones left out.
        """
        values = [
            None if (value := getattr(self, name)) is None else wire.toPB(value)
            for name, wire in _stepFields(type(self), step)
        ]
        while values and values[-1] is None:
            values.pop()
        return tuple(values)

    def takeMessage(self, step: Step, values: object) -> None:
        """
        Take what the other side sent at C{step}: every field of the step,
        checked, those left out unset; nothing else is read.

        @raise InvalidKeycard: for values that are not a sequence, more
            values than the step has fields, or a bad value; the keycard
            is then left as it was.
        """
        fields = _stepFields(type(self), step)
        if type(values) not in (tuple, list):
            raise InvalidKeycard(f"a {step.value} message is a sequence")
        assert isinstance(values, tuple | list)
        if len(values) > len(fields):
            raise InvalidKeycard(
                f"a {self.kind} {step.value} message has at most {len(fields)} values"
            )
        checked = [
            (name, None if i >= len(values) else wire.fromPB(name, values[i]))
            for i, (name, wire) in enumerate(fields)
        ]
        for name, value in checked:
            setattr(self, name, value)

    def adopt(self, answered: Keycard) -> None:
        """
        Take what a bouncer wrote into C{answered}, its copy of this keycard
        (a remote bouncer answers with a new object): the id, the state and
        every field the bouncer writes.
        """
        if answered is self:
            return
        for name, wire in self.wireFields().items():
            if wire.setBy == "bouncer" or name in ("id", "state"):
                setattr(self, name, getattr(answered, name))

    def getTypeToCopy(self) -> bytes:
        return self.keycardType.encode("ascii")

    def getStateToCopy(self) -> bytes:
        """
        Every declared field that is set, in its wire form, packed (see
        L{packState}).
        """
        return self.stateToward(None)

    def stateToward(self, towardBouncer: bool | None) -> bytes:
        """
        The fields that travel in one direction, packed: those set and not
        at their default, leaving out the fields the receiving side writes
        itself (see L{wireField}'s C{setBy}).  A field left out takes its
        default on the other side.

        @param towardBouncer: C{True} toward the bouncer, C{False} back
            toward the client, C{None} every field.
        """
        state = {}
        for name, encode, default in _encoders(type(self), towardBouncer):
            value = getattr(self, name)
            if value is not default:
                state[name] = value if encode is None else encode(value)
        return packState(state)

    def carriesSecret(self, towardBouncer: bool | None = None) -> bool:
        """
        Whether a field declared secret (a password) is set, among the
        fields sent in this direction (see L{stateToward}).
        """
        names = _secretsByClass.get((type(self), towardBouncer))
        if names is None:
            names = _secrets(type(self), towardBouncer)
        return bool(names) and any(getattr(self, name) is not None for name in names)

    def jellyFor(self, jellier: Any) -> Any:
        """
        Send the fields meant for the other side (the side that connected
        sends toward the bouncer), if L{checkSendable} lets it go over this
        connection.
        """
        broker = jellier.invoker
        if broker is None:
            return super().jellyFor(jellier)
        towardBouncer = bool(broker.isClient)
        checkSendable(self, broker.transport, towardBouncer)
        sexp = jellier.prepare(self)
        sexp.extend([self.getTypeToCopy(), self.stateToward(towardBouncer)])
        return jellier.preserve(self, sexp)

    def setCopyableState(self, state: object) -> None:
        """
        Take the state a peer sent, after checking every field.

        @raise InvalidKeycard: if the state has a field this class does not
            declare, a field of the wrong type, or an oversized value; the
            keycard is then left as it was.
        """
        cls = type(self)
        checked = checkState(cls, self.wireFields(), unpackState(state))
        if _plainAttributes(cls):
            self.__dict__.update(checked)
        else:
            for name, value in checked.items():
                setattr(self, name, value)


_Encoders = list[tuple[str, Callable[[Any], Any] | None, object]]
_encodersByClass: dict[tuple[type, bool | None], _Encoders] = {}
_secretsByClass: dict[tuple[type, bool | None], list[str]] = {}

_plainAttributesByClass: dict[type, bool] = {}


def _plainAttributes(cls: type[Keycard]) -> bool:
    """
    Whether the fields of C{cls} can be set all at once through its
    C{__dict__}: no attrs validators or converters run on setting (no own
    C{__setattr__}) and no field is a slot.
    """
    plain = _plainAttributesByClass.get(cls)
    if plain is None:
        slots = any(
            isinstance(getattr(cls, name, None), types.MemberDescriptorType)
            for name in cls.wireFields()
        )
        plain = cls.__setattr__ is object.__setattr__ and not slots
        _plainAttributesByClass[cls] = plain
    return plain


#: Stands for a default no value can be (an attrs factory).
_NO_DEFAULT = object()


def _encoders(cls: type[Keycard], towardBouncer: bool | None) -> _Encoders:
    """
    Each wire field of C{cls} sent in this direction, with its encoder
    (C{None} for none) and the default it is left out at.
    """
    key = (cls, towardBouncer)
    found = _encodersByClass.get(key)
    if found is None:
        wires = cls.wireFields()
        found = _encodersByClass[key] = [
            (
                f.name,
                None if wires[f.name].encode is _same else wires[f.name].encode,
                _NO_DEFAULT if isinstance(f.default, attrs.Factory) else f.default,  # type: ignore[arg-type]
            )
            for f in attrs.fields(cls)
            if f.name in wires and wires[f.name].sentToward(towardBouncer)
        ]
    return found


def _secrets(cls: type[Keycard], towardBouncer: bool | None) -> list[str]:
    key = (cls, towardBouncer)
    found = _secretsByClass.get(key)
    if found is None:
        found = _secretsByClass[key] = [
            n
            for n, w in cls.wireFields().items()
            if w.secret and w.sentToward(towardBouncer)
        ]
    return found


_stepFieldsByClass: dict[tuple[type, Step], list[tuple[str, Wire]]] = {}

#: The fields every keycard has, which protocol 2 never sends as a kind's.
_COMMON = frozenset(attrs.fields_dict(Keycard))


def _stepFields(cls: type[Keycard], step: Step) -> list[tuple[str, Wire]]:
    """
    The fields of C{cls} sent at C{step}, with their L{Wire}s.
    """
    key = (cls, step)
    found = _stepFieldsByClass.get(key)
    if found is None:
        wires = cls.wireFields()
        if cls.steps is not None:
            names: Iterable[str] = cls.steps.of(step)
        else:
            writer = "client" if step in (Step.FIRST, Step.ANSWER) else "bouncer"
            names = [
                name
                for name, wire in wires.items()
                if name not in _COMMON and wire.setBy == writer
            ]
        found = _stepFieldsByClass[key] = [(name, wires[name]) for name in names]
    return found


def kindName(keycardType: str) -> str:
    """
    The kind a keycard type tag names in protocol 2 messages and in
    metrics: this library's tags without their C{twisted_keycard.} prefix.
    """
    return keycardType.removeprefix("twisted_keycard.")


_K = TypeVar("_K", bound=type[Keycard])


def registerKeycard(cls: _K) -> _K:
    """
    Class decorator: register a keycard class with PB under its
    C{keycardType}, so that a peer's keycard of that type is received as a
    new, checked instance of C{cls}.

    Apply it above C{attrs.define}.

    @raise ValueError: if another class already has that type tag.
    """
    tag = cls.keycardType
    existing = _registry.get(tag)
    # The same class imported again (under another module name) may take its
    # own tag back; a different class may not.
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"keycard type {tag!r} is taken by {existing!r}")
    _registry[tag] = cls
    cls.kind = kindName(tag)
    pb.setUnjellyableForClass(tag.encode("ascii"), cls)
    return cls


#: The prefix length that groups IPv6 addresses as one client (a site's
#: /64 is one subscriber's, as one IPv4 address is).
IPV6_GROUP = 64

#: Addresses whose forms are remembered: a client's address is read at
#: every message, and parsing it is most of the cost.
CACHED = 4096


@lru_cache(maxsize=CACHED)
def normalizeAddress(host: str) -> str:
    """
    The canonical text of an IP address: an IPv4-mapped IPv6 address (as a
    dual-stack listener sees an IPv4 peer, C{::ffff:192.0.2.1}) becomes the
    IPv4 address, and IPv6 is compressed and lower case.  Text that is not
    an IP address is returned as it is.
    """
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


@lru_cache(maxsize=CACHED)
def addressGroup(address: str | None) -> str | None:
    """
    The group a client address is counted in for per-address limits: the
    IPv4 address itself, or the /64 an IPv6 address is in (an IPv6 client
    usually has a whole /64 to pick addresses from).
    """
    if address is None:
        return None
    normal = normalizeAddress(address)
    try:
        ip = ipaddress.ip_address(normal)
    except ValueError:
        return normal
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/{IPV6_GROUP}", strict=False))
    return normal


class IExchange(ICredentials):
    """
    The bouncer's side of one exchange: the challenge it sent and everything
    it must compare later.  It never leaves the bouncer.  Once answered it is
    the credentials handed to a L{twisted.cred.checkers.ICredentialsChecker}.
    """

    def challenge(keycard: Keycard) -> bool:
        """
        Write the challenge into the keycard about to go back to the client.

        @return: C{True} if the client must answer before the check, C{False}
            if the keycard already holds everything and can be checked now.
        """

    def answer(keycard: Keycard) -> None:
        """
        Take the client's answer from the keycard it sent back.  Only the
        answer fields are read; everything else comes from this object.

        @raise twisted_keycard.error.ProtocolError: if the answer is malformed
            or does not belong to this exchange.
        """

    def conclude(keycard: Keycard) -> None:
        """
        After a successful check, write the bouncer's own proof (if the
        exchange has one) into the keycard about to go back to the client.
        """


class IChallenger(Interface):
    """
    Starts exchanges for some keycard classes.  Usually the same object as
    the checker, because building a challenge needs the stored data (SCRAM
    needs the salt and the iteration count).
    """

    keycardClasses = Attribute(
        "The keycard classes this challenger starts exchanges for: a tuple."
    )

    def prime(keycard: Keycard) -> Deferred[IExchange]:
        """
        Start an exchange for the first keycard of a client.

        For an unknown user this primes a mock exchange that cannot be told
        from a real one and fails at the check.

        @return: a L{Deferred} firing with an L{IExchange}, or failing with
            L{twisted_keycard.error.ProtocolError} if the keycard is
            malformed.
        """


class IAnswerer(Interface):
    """
    The client's side of one keycard kind: makes the first keycard, answers
    challenges, and checks the server's proof.
    """

    keycardClass = Attribute("The keycard class this answerer produces.")

    def start() -> Keycard:
        """
        @return: the first keycard of an exchange.
        """

    def answer(keycard: Keycard) -> Keycard | Deferred[Keycard]:
        """
        Answer a challenge.

        @param keycard: the keycard the server sent back, REQUESTING.
        @return: the keycard to send back, or a L{Deferred} that fires
            with it (an answerer that asks another process, as
            L{twisted_keycard.sshkeys.SSHAgentAnswerer} asks the SSH agent;
            the PB client waits for it).
        @raise twisted_keycard.error.ProtocolError: for a malformed or
            unacceptable challenge.
        """

    def finish(keycard: Keycard) -> None:
        """
        Check the server's proof in the AUTHENTICATED keycard.

        @raise twisted_keycard.error.ServerAuthenticationFailed: if the
            server did not prove its identity.
        """


class IChannelBindingAnswerer(IAnswerer):
    """
    An answerer whose exchange can bind to the TLS connection it runs over
    (SCRAM-SHA-256-PLUS), so that a relay between client and server is
    caught.  A client that knows the connection calls L{startBound} in
    place of C{start}.
    """

    def startBound(channel: ClientChannel) -> Keycard:
        """
        Begin an exchange over a connection.

        @param channel: the connection's channel binding data, and whether
            the server said it binds this kind.
        @return: the first keycard of the exchange.
        @raise twisted_keycard.error.ProtocolError: if the answerer insists
            on a binding this connection cannot give.
        """


class ExchangeState(enum.Enum):
    """
    Where an exchange is.  Each step is taken once, in order; a step that
    fails, a verification that does not succeed, and any step out of order
    leave the exchange L{SPENT}.
    """

    PRIMED = "primed"
    CHALLENGED = "challenged"
    ANSWERED = "answered"
    SUCCEEDED = "succeeded"
    CONCLUDED = "concluded"
    SPENT = "spent"


class ExchangeStep(enum.Enum):
    """
    The steps of an exchange, named as its methods are.
    """

    CHALLENGE = "challenge"
    ANSWER = "answer"
    VERIFY = "verify"
    CONCLUDE = "conclude"


#: The state each step starts from, and the state it leaves when it
#: succeeds, by the step's value (an enum member's hash is a Python call).
_ORDER = {
    ExchangeStep.CHALLENGE._value_: (ExchangeState.PRIMED, ExchangeState.CHALLENGED),
    ExchangeStep.ANSWER._value_: (ExchangeState.CHALLENGED, ExchangeState.ANSWERED),
    ExchangeStep.VERIFY._value_: (ExchangeState.ANSWERED, ExchangeState.SUCCEEDED),
    ExchangeStep.CONCLUDE._value_: (ExchangeState.SUCCEEDED, ExchangeState.CONCLUDED),
}


@attrs.define
class ExchangeLifecycle:
    """
    The guard every multi-step exchange holds: it lets each step run once,
    in order, and spends the exchange on anything else.

    @ivar state: an L{ExchangeState}.
    """

    state: ExchangeState = ExchangeState.PRIMED
    #: The state the step under way leaves when its body returns.
    _next: ExchangeState = attrs.field(default=ExchangeState.SPENT, repr=False)

    def _begin(self, step: ExchangeStep) -> ExchangeState:
        # Spent until the step succeeds, so a step that raises leaves it so.
        current, self.state = self.state, ExchangeState.SPENT
        start, end = _ORDER[step._value_]
        if current is not start:
            raise ExchangeOutOfOrder(step._value_)
        return end

    def step(self, step: ExchangeStep) -> ExchangeLifecycle:
        """
        Run the body of a C{with} statement as C{step}; the exchange moves
        on if it returns and stays spent if it raises.  Not for
        L{ExchangeStep.VERIFY}: see L{verify}.

        @raise ExchangeOutOfOrder: if C{step} is not the next one.
        @raise ValueError: for L{ExchangeStep.VERIFY}, whose outcome is not
            whether its body raises.
        """
        if step is ExchangeStep.VERIFY:
            raise ValueError("verify with ExchangeLifecycle.verify")
        self._next = self._begin(step)
        return self

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if kind is None:
            self.state = self._next

    def verify(self, check: Callable[[], bool]) -> bool:
        """
        Take the verify step: run C{check} once.

        @return: what C{check} returns; the exchange may be concluded only
            if it is C{True}, and is spent otherwise.
        @raise ExchangeOutOfOrder: if the exchange is not answered, or was
            verified already.
        """
        self._begin(ExchangeStep.VERIFY)
        if not check():
            return False
        self.state = ExchangeState.SUCCEEDED
        return True


def exchangeContext(
    label: bytes, name: str, nonce: str, keycardId: str, requesterName: str | None
) -> bytes:
    """
    What a client proves: the label, the nonce, the keycard id, the
    requester and the client's name, NUL-separated, so a proof made for one
    exchange is worth nothing in another.  Only the name (last) comes from
    the client; the other parts hold no NUL, so no two contexts read alike.
    """
    parts = [label, nonce.encode(), keycardId.encode(), (requesterName or "").encode()]
    return b"\0".join([*parts, name.encode("utf-8")])


class NonceKeycard(Protocol):
    """
    The fields a nonce exchange's challenge reads and writes.
    """

    id: str | None
    requesterName: str | None
    nonce: str | None


class ProofCheck(Protocol):
    """
    What one kind of nonce exchange takes as the client's proof, and how it
    checks it (with the client's key, or one nobody holds for an unknown
    name, so the refusal is the same).
    """

    @property
    def label(self) -> bytes:
        """
        What every context of this kind starts with (see L{exchangeContext}).
        """

    @property
    def keycardClass(self) -> type[NonceKeycard]:
        """
        The keycard class of this kind.
        """

    def read(self, keycard: Keycard) -> bytes:
        """
        @return: the proof in the keycard the client sent back.
        @raise ProtocolError: if there is none, or it is malformed.
        """

    def accepts(self, context: bytes, proof: bytes) -> bool:
        """
        @return: whether C{proof} proves C{context} for a known client.
        """


@attrs.define(eq=False)
class NonceExchange:
    """
    One nonce exchange, every step under an L{ExchangeLifecycle}.  Each
    kind subclasses it only to declare its exchange interface.

    @ivar name: the client's name, which selects its key.
    @ivar nonce: the challenge (base64).
    @ivar check: how the client's proof is read and checked.
    @ivar context: what the client must prove, fixed by the challenge.
    @ivar proof: the client's proof, once answered.
    @ivar lifecycle: the guard that takes each step once, in order.
    """

    name: str
    nonce: str
    check: ProofCheck = attrs.field(repr=False)
    context: bytes = attrs.field(default=b"", init=False, repr=False)
    proof: bytes | None = attrs.field(default=None, init=False, repr=False)
    lifecycle: ExchangeLifecycle = attrs.field(factory=ExchangeLifecycle, init=False)

    def challenge(self, keycard: Keycard) -> bool:
        """
        Write the nonce into the keycard and bind it to the keycard's id and
        requester.

        @return: C{True}: the client must answer.
        """
        with self.lifecycle.step(ExchangeStep.CHALLENGE):
            if not isinstance(keycard, self.check.keycardClass) or keycard.id is None:
                raise ProtocolError("no keycard id to bind the nonce to")
            keycard.nonce = self.nonce
            self.context = exchangeContext(
                self.check.label,
                self.name,
                self.nonce,
                keycard.id,
                keycard.requesterName,
            )
        return True

    def answer(self, keycard: Keycard) -> None:
        """
        Take the client's proof, the only field read back.

        @raise ProtocolError: if it is missing, malformed or out of order.
        """
        with self.lifecycle.step(ExchangeStep.ANSWER):
            self.proof = self.check.read(keycard)

    def verify(self) -> bool:
        """
        Check the client's proof, once.

        @return: whether it proves the context for a known client.
        @raise ProtocolError: if the exchange is not answered, or was
            checked already.
        """
        return self.lifecycle.verify(self._check)

    def _check(self) -> bool:
        assert self.proof is not None
        return self.check.accepts(self.context, self.proof)

    def conclude(self, keycard: Keycard) -> None:
        """
        Write nothing: there is no proof back, the client trusts the server
        through TLS.  Taken only after a successful check, once.
        """
        with self.lifecycle.step(ExchangeStep.CONCLUDE):
            return


class SelfChecking(Protocol):
    def verify(self) -> bool:
        """
        Check the client's answer, once.

        @raise twisted_keycard.error.ExchangeOutOfOrder: if there is no
            answer, or it was checked.
        """


_E = TypeVar("_E", bound=SelfChecking)


def requestVerified(
    credentials: object, kind: type[_E], avatarId: Callable[[_E], str]
) -> Deferred[Any]:
    """
    What C{requestAvatarId} answers for an exchange of class C{kind}.

    @return: a L{Deferred} firing with C{avatarId(credentials)} when it
        verifies, or failing with L{KeycardRefused} for a wrong answer or
        other credentials, or with the
        L{twisted_keycard.error.ExchangeOutOfOrder} of an exchange not
        answered or checked already.
    """
    if not isinstance(credentials, kind):
        return fail(KeycardRefused())
    try:
        good = credentials.verify()
    except ProtocolError as e:
        return fail(e)
    return succeed(avatarId(credentials)) if good else fail(KeycardRefused())
