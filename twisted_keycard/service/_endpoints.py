"""
Twisted endpoint strings, parsed with errors an operator can act on: the
bouncer's C{--listen} and the C{keycard} command's C{--connect} say in one
line what is wrong (an unknown type, a missing port, a missing key file),
where Twisted raises a C{TypeError} about a constructor's arguments.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IStreamClientEndpoint, IStreamServerEndpoint
from twisted.python.filepath import UnlistableError

from twisted_keycard.error import KeycardError

SERVER_EXAMPLES = "tcp:PORT[:interface=ADDRESS], ssl:PORT:privateKey=FILE, unix:PATH"
CLIENT_EXAMPLES = "tcp:HOST:PORT, tls:HOST:PORT:trustRoots=DIR, unix:PATH"

_UNKNOWN_TYPE = re.compile(r"Unknown endpoint type: '(.*)'")
_NOT_A_NUMBER = re.compile(r"invalid literal for int\(\) with base 10: (.*)")
_MISSING = re.compile(r"missing \d+ required positional argument[s]?: (.*)")
_UNEXPECTED = re.compile(r"unexpected keyword argument '(.*)'")


class EndpointError(KeycardError):
    """
    Raised for an endpoint string that names no usable endpoint; the
    message is one line naming the string and what is wrong with it.
    """


def _parameter(description: str, name: str) -> str | None:
    for part in description.split(":"):
        key, sep, value = part.partition("=")
        if sep and key == name:
            return value
    return None


def _reason(error: BaseException, description: str, examples: str) -> str:
    text = str(error)
    if isinstance(error, ValueError) and (m := _UNKNOWN_TYPE.search(text)):
        return f"unknown endpoint type {m.group(1)!r} (use {examples})"
    if isinstance(error, ValueError) and (m := _NOT_A_NUMBER.search(text)):
        return f"{m.group(1)} is not a number"
    if isinstance(error, TypeError) and (m := _MISSING.search(text)):
        missing = m.group(1).replace("'", "")
        if "port" in missing:
            return f"no port given (use {examples})"
        return f"missing {missing} (use {examples})"
    if isinstance(error, TypeError) and (m := _UNEXPECTED.search(text)):
        return f"unknown parameter {m.group(1)!r}"
    if isinstance(error, UnlistableError):
        roots = _parameter(description, "trustRoots")
        return f"trustRoots={roots} is not a directory of PEM certificates"
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror.lower()}"
    first = text.splitlines()[0] if text else ""
    return first or type(error).__name__


def serverEndpoint(
    reactor: Any, description: str, option: str = "--listen"
) -> IStreamServerEndpoint:
    """
    The server endpoint C{description} names, given as C{option}.

    @raise EndpointError: for a string that names none, or one whose key or
        certificate files cannot be read.
    """
    try:
        endpoint: IStreamServerEndpoint = serverFromString(reactor, description)
    except Exception as e:
        raise EndpointError(
            f"bad {option} {description!r}: {_reason(e, description, SERVER_EXAMPLES)}"
        ) from None
    return endpoint


def clientEndpoint(reactor: Any, description: str) -> IStreamClientEndpoint:
    """
    The client endpoint C{description} names.

    @raise EndpointError: for a string that names none, or whose trust
        roots cannot be read.
    """
    try:
        endpoint: IStreamClientEndpoint = clientFromString(reactor, description)
    except Exception as e:
        raise EndpointError(
            f"bad --connect {description!r}: {_reason(e, description, CLIENT_EXAMPLES)}"
        ) from None
    return endpoint


def describeListenError(error: CannotListenError) -> str:
    """
    One line for a port that could not be listened on: the address and the
    system's reason (C{address already in use}, C{permission denied}).
    """
    host = error.interface or "*"
    address = f"[{host}]" if ":" in host else host
    cause = error.socketError
    if isinstance(cause, OSError) and cause.strerror:
        why = cause.strerror.lower()
    else:
        why = str(cause) or "unknown reason"
    return f"cannot listen on {address}:{error.port}: {why}"
