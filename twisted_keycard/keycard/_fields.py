"""
Declarations of the fields a keycard may carry over the wire, and their
validation.

A keycard class declares each of its wire fields as an attrs field built by
L{wireField}; the L{Wire} object in its metadata says the type, the length
limit and how the value is encoded.  Anything a peer sends that is not
declared this way is refused.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from twisted_keycard.error import InvalidKeycard

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
