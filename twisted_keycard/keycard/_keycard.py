"""
Keycards: credentials that travel between processes over Perspective Broker.

A keycard is sent by a client, completed by a requester (which sets the
address it came from and its own name), challenged and checked by a bouncer,
and sent back.  Each subclass is the contract of one exchange.

A keycard received over PB is always a new object, built only from the
fields its class declares with L{wireField}; see L{Keycard.setCopyableState}.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import attrs
from twisted.cred.credentials import ICredentials
from twisted.spread import pb
from zope.interface import implementer

from twisted_keycard.keycard._channel import (
    BINDINGS_LENGTH,
    formatBindings,
    parseBindings,
)
from twisted_keycard.keycard._fields import (
    Wire,
    _same,
    checkState,
    packState,
    unpackState,
    wireField,
    wireFields,
)

__all__ = [
    "Keycard",
    "KeycardState",
    "Wire",
    "keycardClassFor",
    "registerKeycard",
    "wireField",
]
from twisted_keycard.keycard._tls import checkSendable

#: Length limits shared by the keycard classes.
ID_LENGTH = 64
NAME_LENGTH = 256
ADDRESS_LENGTH = 128
TOKEN_LENGTH = 4096


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
        the keycard came on, by type (see L{twisted_keycard.keycard._channel}),
        set by the requester from its own side of the connection; never
        taken from a client.

    @cvar bearer: whether whoever reads the keycard in transit can log in
        with it (a token): such a keycard is not sent over TLS whose server
        was not verified.
    @cvar channelBoundType: the tag a requester lists beside
        C{keycardType} in C{keycardClasses()} when it gives the bouncer the
        connection's channel binding data, for kinds whose exchange binds
        to it (SCRAM-SHA-256-PLUS).
    """

    keycardType: ClassVar[str] = "twisted_keycard.Keycard"
    bearer: ClassVar[bool] = False
    channelBoundType: ClassVar[str | None] = None

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
    pb.setUnjellyableForClass(tag.encode("ascii"), cls)
    return cls
