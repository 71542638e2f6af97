"""
The check C{keycard login} makes of its C{--connect} endpoint: a TLS that
does not check the server's certificate and name is refused.
"""

from __future__ import annotations

from twisted_keycard.error import KeycardError


def _endpointParts(description: str) -> list[str]:
    """
    The C{:}-separated parts of an endpoint description, with Twisted's
    backslash escapes undone.
    """
    parts, current, escaped = [], "", False
    for char in description:
        if escaped or char not in "\\:":
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            parts.append(current)
            current = ""
    parts.append(current)
    return parts


def checkEndpoint(endpoint: str) -> None:
    """
    Refuse a client endpoint whose TLS would not check the server: an
    C{ssl:} endpoint without C{hostname=} checks no host name (and, without
    C{caCertsDir=}, no certificate at all), so a man in the middle would
    see the login.

    @raise KeycardError: saying what to use instead.
    """
    parts = _endpointParts(endpoint)
    options = {part.partition("=")[0] for part in parts[1:] if "=" in part}
    if parts[0].lower() == "ssl" and "hostname" not in options:
        raise KeycardError(
            "ssl: does not check the server's certificate; "
            "connect with tls:HOST:PORT:trustRoots=DIR"
        )
