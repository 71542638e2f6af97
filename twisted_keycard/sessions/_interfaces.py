"""
The roles of a brokered session on the service's side: what a service asks
of the bouncer, and what the bouncer tells it.

Methods here have no C{self}; each docstring says what the returned
L{Deferred} fires with and how it fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from zope.interface import Interface

if TYPE_CHECKING:
    from twisted_keycard.sessions._records import SessionGrant


class ISessionListener(Interface):
    """
    What the bouncer (or the service's link to it) tells a service that
    holds sessions.
    """

    def endSessions(sessionIds: Sequence[str]) -> None:
        """
        The keycards of these sessions' clients ended (expired, revoked, or
        their clients left the bouncer): drop the sessions.
        """

    def endAllSessions() -> None:
        """
        The service can no longer hear of revocations (its link to the
        bouncer is gone): drop every session.
        """


class ITicketRedeemer(Interface):
    """
    The bouncer as one service sees it: the service's name is the one the
    bouncer knows it by (its avatar id over PB), never one it claims.
    """

    def listen(listener: ISessionListener) -> None:
        """
        Tell C{listener} when sessions end at the bouncer; tickets are
        granted for this service only while one listens.
        """

    def redeem(ticketId: str) -> Deferred[SessionGrant]:
        """
        Redeem a ticket a client presented: the bouncer marks the service's
        check, and the ticket cannot be redeemed again.

        @return: a L{Deferred} firing with the L{SessionGrant} (who the
            client is, the session secret), or failing with
            L{twisted_keycard.error.SessionRefused} if the ticket is
            unknown, expired, already redeemed or for another service.
        """

    def confirm(
        ticketId: str, clientNonce: bytes, serviceNonce: bytes, confirmation: bytes
    ) -> Deferred[None]:
        """
        The client confirmed the session: the bouncer checks the
        confirmation, marks the client's check, and deletes the ticket.

        @return: a L{Deferred} firing with C{None} once the session is
            established (the bouncer will tell the listener when it ends),
            or failing with L{twisted_keycard.error.SessionRefused}.
        """

    def ended(sessionIds: Sequence[str]) -> Deferred[None]:
        """
        These sessions ended on the service's side (idle, broken, closed).

        @return: a L{Deferred} firing with C{None}.
        """
