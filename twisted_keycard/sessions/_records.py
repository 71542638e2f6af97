"""
What the bouncer hands to each end of a brokered session, as a value and
as the dictionary that crosses PB (checked on arrival).
"""

from __future__ import annotations

import math

import attrs

from twisted_keycard.error import SessionRefused
from twisted_keycard.sessions._keys import SECRET_BYTES

#: Characters of a ticket id, at most (the bouncer's are 32).
TICKET_ID_LENGTH = 64

#: Characters of a client or service name, at most (as an avatar id).
NAME_LENGTH = 256

_WIRE_KEYS = frozenset(["ticket", "secret", "client", "service", "expires"])


def validTicketId(value: object) -> bool:
    """
    Whether a peer's C{value} may be a ticket id.
    """
    return isinstance(value, str) and 0 < len(value) <= TICKET_ID_LENGTH


def validName(value: object) -> bool:
    """
    Whether a peer's C{value} may be a client or service name.
    """
    return isinstance(value, str) and 0 < len(value) <= NAME_LENGTH


@attrs.frozen
class SessionGrant:
    """
    A ticket as the bouncer hands it to the client (when it asks for it)
    and to the service (when it redeems it).

    @ivar ticketId: what the client presents to the service; the id of the
        session once established.
    @ivar secret: the session secret (see L{sessionSecret}).
    @ivar clientName: the client's avatar id, as the bouncer knows it.
    @ivar serviceName: the service's name, as the bouncer knows it.
    @ivar expires: POSIX time after which the ticket is refused.
    """

    ticketId: str
    secret: bytes = attrs.field(repr=False)
    clientName: str
    serviceName: str
    expires: float

    def toWire(self) -> dict[str, object]:
        """
        The dictionary that crosses PB.
        """
        return {
            "ticket": self.ticketId,
            "secret": self.secret,
            "client": self.clientName,
            "service": self.serviceName,
            "expires": self.expires,
        }

    @classmethod
    def fromWire(cls, state: object) -> SessionGrant:
        """
        The grant a peer sent, checked.

        @raise SessionRefused: if C{state} is not a grant.
        """
        if not isinstance(state, dict) or set(state) != _WIRE_KEYS:
            raise SessionRefused()
        ticketId, secret, expires = state["ticket"], state["secret"], state["expires"]
        client, service = state["client"], state["service"]
        if not (
            validTicketId(ticketId)
            and isinstance(secret, bytes)
            and len(secret) == SECRET_BYTES
            and validName(client)
            and validName(service)
            and isinstance(expires, int | float)
            and not isinstance(expires, bool)
            and math.isfinite(expires)
        ):
            raise SessionRefused()
        return cls(ticketId, secret, client, service, float(expires))
