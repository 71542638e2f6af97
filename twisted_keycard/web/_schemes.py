"""
The values the HTTP schemes carry, decoded into keycard fields: Basic's
user and password, SCRAM-over-HTTP's base64 C{data} (RFC 7804), and the
expiry written in a token the bouncer accepted.
"""

from __future__ import annotations

import binascii
import struct
from collections.abc import Mapping
from typing import TypeVar

from twisted_keycard.error import InvalidKeycard, KeycardError, ProtocolError
from twisted_keycard.keycard._keycard import Keycard
from twisted_keycard.passwords import PasswordKeycard
from twisted_keycard.scram._keycard import SCRAMKeycard
from twisted_keycard.scram._messages import b64
from twisted_keycard.tokens._format import MAC_BYTES, keycardIdOf

_K = TypeVar("_K", bound=Keycard)

#: The fixed head of a token's record: flags, issued, expires (see
#: L{twisted_keycard.tokens._format}).
_TOKEN_HEAD = struct.Struct(">BQQ")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def keycardFrom(cls: type[_K], fields: dict[str, object]) -> _K:
    """
    A new keycard of class C{cls} holding what a client sent, checked as a
    keycard received over PB is (types, length limits).

    @raise ProtocolError: if a field is not acceptable.
    """
    keycard = cls()
    try:
        keycard.setCopyableState({k: v for k, v in fields.items() if v is not None})
    except InvalidKeycard as e:
        raise ProtocolError(str(e)) from None
    return keycard


def decodeBasic(token68: str | None) -> tuple[str, str]:
    """
    Basic credentials (RFC 7617, UTF-8): C{base64(user:password)}.

    @return: the user name and the password.
    @raise ProtocolError: if they are not base64 of UTF-8 with a colon.
    """
    if token68 is None:
        raise ProtocolError("no Basic credentials")
    try:
        text = binascii.a2b_base64(token68.encode("ascii"), strict_mode=True)
        username, sep, password = text.decode("utf-8").partition(":")
    except (binascii.Error, ValueError):
        raise ProtocolError("malformed Basic credentials") from None
    if not sep or not username:
        raise ProtocolError("malformed Basic credentials")
    return username, password


def passwordKeycard(username: str, password: str) -> PasswordKeycard:
    """
    A password keycard for what a client sent (Basic, a login form).

    @raise ProtocolError: if a field is over its limit.
    """
    return keycardFrom(PasswordKeycard, {"username": username, "password": password})


def scramKeycard(params: Mapping[str, str]) -> SCRAMKeycard:
    """
    The SCRAM keycard for one RFC 7804 message: without C{sid}, the
    client-first message; with it, the client-final message of the exchange
    whose keycard id is C{sid}.

    @raise ProtocolError: if C{data} is missing or malformed.
    """
    message = decodeData(params.get("data"))
    sid = params.get("sid")
    if sid is None:
        return keycardFrom(SCRAMKeycard, {"clientFirst": message})
    return keycardFrom(SCRAMKeycard, {"id": sid, "clientFinal": message})


def decodeData(data: str | None) -> str:
    """
    A SCRAM message from RFC 7804's C{data} auth-param: base64 of UTF-8
    (a trailing newline, as in the RFC's own examples, is left out).

    @raise ProtocolError: if it is missing or not base64 of UTF-8.
    """
    if data is None:
        raise ProtocolError("no SCRAM data")
    try:
        raw = binascii.a2b_base64(data.encode("ascii"), strict_mode=True)
        return raw.decode("utf-8").removesuffix("\n")
    except (binascii.Error, ValueError):
        raise ProtocolError("malformed SCRAM data") from None


def encodeData(message: str) -> str:
    """
    RFC 7804's C{data}: base64 of the message.
    """
    return b64(message.encode("utf-8"))


def tokenExpires(token: str) -> float | None:
    """
    The expiry a C{kc1} token states, read without checking it: only for a
    token the bouncer has just accepted, to hold it no longer than it is
    valid.

    @return: the POSIX time, or C{None} if it cannot be read.
    """
    try:
        keycardId = keycardIdOf(token)
        body = token[len("kc1.") + len(keycardId) + 1 :].encode("ascii")
        body = body.translate(_FROM_URLSAFE) + b"=" * (-len(body) % 4)
        record = binascii.a2b_base64(body)[:-MAC_BYTES]
        _, _, expires = _TOKEN_HEAD.unpack_from(record)
    except (KeycardError, binascii.Error, ValueError, struct.error):
        return None
    return float(expires) / 1000
