"""
Brokered sessions: the bouncer as the trusted third party between a client
and a service, and every later message on their connection authenticated
with the session's key.

The client asks the bouncer for a ticket (L{connectSession} does it all),
the service redeems it (L{SessionRoot}, with a L{TicketGranter}
registration in the bouncer's process or a L{RemoteTicketRedeemer}), each
proves to the other that it holds the session the bouncer vouched for,
and their connection is sealed (L{SessionBroker}).  The bouncer's PB face
grants and redeems tickets through a L{TicketGrantingRealm}.
"""

from twisted_keycard.error import SessionRefused
from twisted_keycard.sessions._bouncerside import (
    SessionPerspective,
    TicketGrantingRealm,
)
from twisted_keycard.sessions._client import (
    Session,
    SessionClientFactory,
    connectSession,
    requestTicket,
)
from twisted_keycard.sessions._granter import (
    ServiceRegistration,
    TicketGranter,
    TicketLimits,
)
from twisted_keycard.sessions._interfaces import (
    ISessionListener,
    ITicketRedeemer,
    SessionGrant,
)
from twisted_keycard.sessions._service import (
    RemoteTicketRedeemer,
    SessionBroker,
    SessionRoot,
    SessionServerFactory,
)

__all__ = [
    "ISessionListener",
    "ITicketRedeemer",
    "RemoteTicketRedeemer",
    "ServiceRegistration",
    "Session",
    "SessionBroker",
    "SessionClientFactory",
    "SessionGrant",
    "SessionPerspective",
    "SessionRefused",
    "SessionRoot",
    "SessionServerFactory",
    "TicketGranter",
    "TicketGrantingRealm",
    "TicketLimits",
    "connectSession",
    "requestTicket",
]
