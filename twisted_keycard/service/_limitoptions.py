"""
The options of the limits on connections (see L{ConnectionLimits}), and the
limits they ask for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from twisted.python import usage

from twisted_keycard.pb._limits import ConnectionLimits, MessageBudget

#: The library's defaults, which the options' defaults repeat.
LIMITS = ConnectionLimits()
_IN, _OUT = LIMITS.loginBudget, LIMITS.budget

#: twistd options (name, short, default, help, type), as C{optParameters}.
CONNECTION_OPTIONS: list[list[Any]] = [
    ["login-timeout", None, LIMITS.loginTimeout, "seconds to log in (0: none)", float],
    [
        "idle-timeout",
        None,
        0.0,
        "seconds a logged-in client may be silent (0: any)",
        float,
    ],
    [
        "max-unauthenticated",
        None,
        LIMITS.maxUnauthenticated,
        "clients not logged in",
        int,
    ],
    [
        "max-unauthenticated-per-address",
        None,
        LIMITS.maxUnauthenticatedPerAddress,
        "connections not logged in per client address (IPv6: per /64)",
        int,
    ],
    [
        "login-messages",
        None,
        LIMITS.loginMessages,
        "messages a client sends to log in",
        int,
    ],
    ["login-message-bytes", None, _IN.bytes, "bytes of a message before login", int],
    [
        "login-message-objects",
        None,
        _IN.objects,
        "items of a message before login",
        int,
    ],
    [
        "login-message-depth",
        None,
        _IN.depth,
        "lists nested in a message before login",
        int,
    ],
    ["max-message-bytes", None, _OUT.bytes, "bytes of a message after login", int],
    ["max-message-objects", None, _OUT.objects, "items of a message after login", int],
    [
        "log-lines",
        None,
        LIMITS.logLines,
        "refusals logged per address and minute",
        int,
    ],
]


def connectionLimits(options: Mapping[str, Any]) -> ConnectionLimits:
    """
    The L{ConnectionLimits} the options ask for.

    @raise usage.UsageError: for limits that do not make sense.
    """
    try:
        return ConnectionLimits(
            loginTimeout=options["login-timeout"] or None,
            idleTimeout=options["idle-timeout"] or None,
            maxUnauthenticated=options["max-unauthenticated"],
            maxUnauthenticatedPerAddress=options["max-unauthenticated-per-address"],
            loginMessages=options["login-messages"],
            loginBudget=MessageBudget(
                bytes=options["login-message-bytes"],
                objects=options["login-message-objects"],
                depth=options["login-message-depth"],
            ),
            budget=attrs.evolve(
                LIMITS.budget,
                bytes=options["max-message-bytes"],
                objects=options["max-message-objects"],
            ),
            logLines=options["log-lines"],
        )
    except ValueError as e:
        raise usage.UsageError(str(e)) from None
