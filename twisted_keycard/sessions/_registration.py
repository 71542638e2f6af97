"""
One service as the bouncer knows it: the L{ITicketRedeemer} a service in
the bouncer's process uses, and the bouncer service's perspective of a
service's avatar uses for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from twisted_keycard.sessions._interfaces import ISessionListener, ITicketRedeemer
from twisted_keycard.sessions._records import SessionGrant

if TYPE_CHECKING:
    from twisted_keycard.sessions._granter import TicketGranter


@implementer(ITicketRedeemer)
class ServiceRegistration:
    """
    One service, as the bouncer knows it: its name (its avatar id, for a
    service in another process) and the listener it is told of ended
    sessions through.  Each connection of a service has its own.
    """

    def __init__(self, granter: TicketGranter, name: str) -> None:
        self.granter = granter
        self.name = name
        self.listener: ISessionListener | None = None
        self.closed = False

    def listen(self, listener: ISessionListener) -> None:
        self.listener = listener
        self.granter._listening(self)

    def redeem(self, ticketId: str) -> Deferred[SessionGrant]:
        return self.granter._settle(self.granter._redeem, self, ticketId)

    def confirm(
        self,
        ticketId: str,
        clientNonce: bytes,
        serviceNonce: bytes,
        confirmation: bytes,
    ) -> Deferred[None]:
        return self.granter._settle(
            self.granter._confirm,
            self,
            ticketId,
            clientNonce,
            serviceNonce,
            confirmation,
        )

    def ended(self, sessionIds: Sequence[str]) -> Deferred[None]:
        self.granter._ended(self, sessionIds)
        return succeed(None)

    def close(self) -> None:
        """
        The service went: forget its sessions (it ends them itself when it
        loses the bouncer) and redeem nothing more through this.
        """
        self.granter._close(self)
