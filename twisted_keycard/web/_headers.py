"""
The HTTP authentication headers of RFC 7235 as the guard reads and writes
them: C{Authorization} (a scheme and a token68, or auth-params), and the
challenges of C{WWW-Authenticate} and C{Authentication-Info}.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import attrs

from twisted_keycard.error import ProtocolError

#: The schemes the guard speaks, as written in its challenges.
BEARER = "Bearer"
BASIC = "Basic"
SCRAM = "SCRAM-SHA-256"

#: Auth-params at most in one header, and characters at most in one value.
MAX_PARAMS = 8
MAX_VALUE = 4096

_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_SCHEME = re.compile(rf"({_TCHARS})(?:[ ]+(.*))?\Z", re.DOTALL)
_TOKEN68 = re.compile(r"[A-Za-z0-9._~+/-]+=*\Z")
# One auth-param: a token name, "=", a quoted string or a run of characters
# that are neither separators nor quotes (RFC 7804's examples leave base64
# unquoted, "/" and "=" included).
_PARAM = re.compile(
    rf'[ \t]*({_TCHARS})[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)*)"|([^",\s]+))[ \t]*(?:,|\Z)',
    re.DOTALL,
)
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)
_BARE = ("data", "sid")


@attrs.frozen
class Credentials:
    """
    An C{Authorization} header, parsed.

    @ivar scheme: the scheme as the client wrote it.
    @ivar token68: the token68 form (Bearer, Basic), if that is what came.
    @ivar params: the auth-params (SCRAM), by lower-case name.
    """

    scheme: str
    token68: str | None = None
    params: Mapping[str, str] = attrs.field(factory=dict)

    def isScheme(self, scheme: str) -> bool:
        """
        Whether this is C{scheme}; schemes are case-insensitive.
        """
        return self.scheme.lower() == scheme.lower()


def parseAuthorization(value: bytes) -> Credentials:
    """
    Read an C{Authorization} header value.

    @raise ProtocolError: if it is not one scheme followed by a token68 or
        by at most L{MAX_PARAMS} auth-params, each named once, or a value is
        over L{MAX_VALUE} characters.
    """
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("the Authorization header is not ASCII") from None
    match = _SCHEME.match(text.strip())
    if match is None:
        raise ProtocolError("malformed Authorization header")
    scheme, rest = match.group(1), (match.group(2) or "").strip()
    if not rest:
        return Credentials(scheme)
    if _TOKEN68.match(rest):
        if len(rest) > MAX_VALUE:
            raise ProtocolError("Authorization value too long")
        return Credentials(scheme, token68=rest)
    return Credentials(scheme, params=parseParams(rest))


def parseParams(text: str) -> dict[str, str]:
    """
    Read comma-separated auth-params, names in lower case.

    @raise ProtocolError: as L{parseAuthorization}.
    """
    params: dict[str, str] = {}
    position = 0
    text = text.strip()
    while position < len(text):
        match = _PARAM.match(text, position)
        if match is None or len(params) >= MAX_PARAMS:
            raise ProtocolError("malformed auth-params")
        name = match.group(1).lower()
        quoted, bare = match.group(2), match.group(3)
        value = _UNESCAPE.sub(r"\1", quoted) if quoted is not None else bare
        if name in params or len(value) > MAX_VALUE:
            raise ProtocolError("repeated or oversized auth-param")
        params[name] = value
        position = match.end()
    return params


def quote(value: str) -> str:
    """
    A quoted-string holding C{value}.
    """
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def challenge(scheme: str, params: Sequence[tuple[str, str]] = ()) -> bytes:
    """
    One challenge (or C{Authentication-Info} value, without a scheme):
    C{scheme name=value, ...}.  Values are quoted, except base64 C{data}
    and C{sid}, written bare as RFC 7804 shows them.
    """
    parts = [
        f"{name}={value if name in _BARE else quote(value)}" for name, value in params
    ]
    text = ", ".join(parts)
    if scheme:
        text = f"{scheme} {text}" if text else scheme
    return text.encode("ascii")
