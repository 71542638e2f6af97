"""
Keycards: credentials that travel between processes over Perspective Broker.

A keycard is sent by a client, completed by a requester (which sets the
address it came from and its own name), challenged and checked by a bouncer,
and sent back.  Each subclass is the contract of one exchange.

A keycard received over PB is always a new object, built only from the
fields its class declares with L{wireField}, each checked (type, length)
before anything reads it; client addresses are kept in one text form per
host, so that rules, limits and tokens compare like with like.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import math
import re
import types
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

import attrs
from twisted.cred.credentials import ICredentials
from twisted.spread import pb
from zope.interface import implementer

from twisted_keycard.error import InvalidKeycard
from twisted_keycard.keycard._tls import (
    BINDINGS_LENGTH,
    checkSendable,
    formatBindings,
    parseBindings,
)

__all__ = [
    "Keycard",
    "KeycardState",
    "Wire",
    "keycardClassFor",
    "registerKeycard",
    "wireField",
]


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
        the keycard came on, by type (see L{twisted_keycard.keycard._tls}),
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
        return any(
            getattr(self, name) is not None
            for name in _secrets(type(self), towardBouncer)
        )

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
