"""
Records as the Lua scripts read and write them: field names and strings,
numbers written by Python so that they read back the same.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from typing import Any

from twisted_keycard.store._records import IssuedKeycard, Revocation
from twisted_keycard.tokens._keyring import Keyring, SigningKey

#: Seconds Redis keeps what ended past its end, since the clocks of the
#: bouncers sharing it differ.
GRACE = 60.0

#: Longest TTL a key gets, in seconds (ten years): a bound for absurd
#: expiries.
MAX_TTL = 10 * 365 * 86400

_OPTIONAL = (
    ("r", "requesterName"),
    ("ad", "address"),
    ("p", "parentId"),
    ("s", "seatPool"),
    ("f", "familyId"),
    ("l", "holderId"),
)


def number(value: float) -> str:
    """
    A float as text that Redis and Python read back exactly.
    """
    return repr(float(value))


def ttl(expires: float, now: float, grace: float) -> int:
    """
    Seconds for Redis to keep what ends at C{expires}, by a clock that
    reads C{now}: until then and C{grace} more, at least a second.
    """
    seconds = expires - now + grace
    if not math.isfinite(seconds):
        return MAX_TTL if seconds > 0 else 1
    return max(1, min(MAX_TTL, math.ceil(seconds)))


def recordFields(record: IssuedKeycard) -> list[str]:
    """
    The field names and values of a keycard's hash, in pairs.
    """
    fields = [
        "id",
        record.keycardId,
        "a",
        record.avatarId,
        "b",
        record.bouncerName,
        "t",
        record.keycardType,
        "i",
        number(record.issued),
        "d",
        number(record.duration),
        "e",
        number(record.expires),
        "h",
        "1" if record.held else "0",
    ]
    for name, attribute in _OPTIONAL:
        value = getattr(record, attribute)
        if value is not None:
            fields += [name, value]
    return fields


def fromFields(values: Sequence[Any] | None) -> IssuedKeycard | None:
    """
    The record a script returned (its fields in L{FIELDS} order), or
    C{None} for none.
    """
    if not values or values[0] is None:
        return None
    (keycardId, a, r, b, t, ad, i, d, e, p, s, h, f, holder) = values
    return IssuedKeycard(
        keycardId=keycardId,
        avatarId=a,
        requesterName=r,
        bouncerName=b,
        keycardType=t,
        address=ad,
        issued=float(i),
        duration=float(d),
        expires=float(e),
        parentId=p,
        seatPool=s,
        held=h == "1",
        familyId=f,
        holderId=holder,
    )


def revocationArgs(revocation: Revocation, now: float, grace: float) -> list[str]:
    return [
        revocation.keycardId,
        number(revocation.expires),
        number(revocation.revokedAt),
        revocation.reason,
        str(ttl(revocation.expires, now, grace)),
    ]


def revocationFrom(fields: dict[str, str]) -> Revocation:
    return Revocation(
        fields["k"], float(fields["e"]), float(fields["at"]), fields.get("why", "")
    )


def keyFields(keyring: Keyring) -> list[str]:
    """
    The keyring's hash: each key id and its key in JSON.
    """
    fields = []
    for key in keyring.keys:
        fields += [
            key.kid,
            json.dumps(
                {
                    "secret": base64.b64encode(key.secret).decode("ascii"),
                    "created": key.created,
                    "notAfter": key.notAfter,
                }
            ),
        ]
    return fields


def keyringFrom(fields: dict[str, str]) -> Keyring | None:
    if not fields:
        return None
    keys = []
    for kid, text in fields.items():
        key = json.loads(text)
        keys.append(
            SigningKey(
                kid, base64.b64decode(key["secret"]), key["created"], key["notAfter"]
            )
        )
    return Keyring.fromKeys(keys)


def pairsToDict(values: Sequence[Any]) -> dict[str, Any]:
    """
    A flat C{[name, value, ...]} reply as a dictionary.
    """
    return dict(zip(values[::2], values[1::2], strict=True))
