"""
Limits on what a stranger's connection may cost a PB server before it logs
in: a deadline to log in, caps on such connections in all and per client
address, a budget for each message, and a bound on the lines the log gives
to one client address, as values.  A C{ConnectionGuard} applies them for
a C{KeycardServerFactory}.
"""

from __future__ import annotations

from typing import Any

import attrs

from twisted_keycard.keycard._address import addressGroup
from twisted_keycard.keycard._keycard import ADDRESS_LENGTH
from twisted_keycard.pb._banana import MAX_DEPTH


def _positive(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """
    An attrs validator: a positive number.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{attribute.name} must be a positive number, not {value!r}")


def _positiveOrNone(
    instance: object, attribute: attrs.Attribute[Any], value: object
) -> None:
    """
    An attrs validator: a positive number, or C{None} for no limit.
    """
    if value is not None:
        _positive(instance, attribute, value)


@attrs.frozen
class MessageBudget:
    """
    What one PB message may cost the broker that receives it.

    @ivar bytes: bytes on the wire.
    @ivar objects: items it decodes to: the message, and every item of
        every list in it.
    @ivar depth: lists open inside one another.
    """

    bytes: int = attrs.field(validator=_positive)
    objects: int = attrs.field(validator=_positive)
    depth: int = attrs.field(validator=_positive)


#: A keycard login message decodes to 16 items, 4 lists deep, in well
#: under 20 KiB (a keycard's state is at most 16 KiB): 64 times the items,
#: 8 times the depth, 3 times the bytes.
LOGIN_BUDGET = MessageBudget(bytes=64 * 1024, objects=1024, depth=32)

#: After login: PB's own bounds (1 MiB, lists nested 512 deep), and items
#: enough for a requester's list of 65,536 keycard ids.
SESSION_BUDGET = MessageBudget(bytes=1024 * 1024, objects=131_072, depth=MAX_DEPTH)


@attrs.frozen
class ConnectionLimits:
    """
    Limits on the connections of one C{KeycardServerFactory}.

    A connection is I{logged in} once it holds a keycard (see
    C{ClientConnection}); until then it is a stranger's.

    @ivar loginTimeout: seconds a connection has to log in before it is
        dropped; C{None} for no deadline.
    @ivar idleTimeout: seconds a logged-in connection may stay silent
        before it is closed; C{None} (the default) for never, since PB has
        no keepalive and a logged-in client may rightly say nothing for
        hours (its keycard's expiry ends it anyway).
    @ivar maxUnauthenticated: connections not logged in, at most, in all.  When
        full, a new connection closes the oldest one of the client address
        that holds the most, if that address holds at least as many as the
        newcomer's would; else the newcomer is closed.
    @ivar maxUnauthenticatedPerAddress: connections not logged in, at most, per
        client address (an IPv4 address, or an IPv6 /64).
    @ivar loginMessages: messages a connection may send before it logs in
        (a login takes a few); C{None} for no bound.
    @ivar loginBudget: the L{MessageBudget} of each message before login.
    @ivar budget: the L{MessageBudget} of each message after login.
    @ivar logLines: lines about refused messages and dropped connections
        logged per client address and L{logWindow}, at most; the rest are
        counted, and the count is logged with the next line allowed.
    @ivar logWindow: seconds of that window.
    """

    loginTimeout: float | None = attrs.field(default=10.0, validator=_positiveOrNone)
    idleTimeout: float | None = attrs.field(default=None, validator=_positiveOrNone)
    maxUnauthenticated: int | None = attrs.field(default=512, validator=_positiveOrNone)
    maxUnauthenticatedPerAddress: int | None = attrs.field(
        default=16, validator=_positiveOrNone
    )
    loginMessages: int | None = attrs.field(default=32, validator=_positiveOrNone)
    loginBudget: MessageBudget = LOGIN_BUDGET
    budget: MessageBudget = SESSION_BUDGET
    logLines: int = attrs.field(default=10, validator=attrs.validators.ge(0))
    logWindow: float = attrs.field(default=60.0, validator=_positive)


def groupOf(address: object) -> str:
    """
    The client address group of an L{IAddress}: its host's L{addressGroup}
    for an IP address, else a bounded text form of the address.
    """
    host = getattr(address, "host", None)
    if isinstance(host, str):
        group = addressGroup(host)
        assert group is not None
        return group[:ADDRESS_LENGTH]
    return str(address)[:ADDRESS_LENGTH]
