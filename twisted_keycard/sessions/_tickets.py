"""
The bouncer's table of tickets and sessions, in memory: tickets waiting to
be redeemed and confirmed (single use, expiring within seconds, bounded in
number, each with its secret), and the sessions they became (no secret:
only which service to tell when the client's keycard ends).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime

from twisted_keycard.bouncer._timers import ExpiryTimers


def _positive(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{attribute.name} must be a positive number, not {value!r}")


@attrs.frozen
class TicketLimits:
    """
    Limits on a bouncer's tickets and sessions.

    @ivar timeout: seconds from a ticket's grant to its confirmation, at
        most: the whole exchange takes a few round trips.
    @ivar maxPending: tickets granted and not yet confirmed, in all.
    @ivar maxPendingPerKeycard: such tickets of one client keycard.
    @ivar maxSessionsPerKeycard: sessions established under one client
        keycard and not ended.
    """

    timeout: float = attrs.field(default=5.0, validator=_positive)
    maxPending: int = attrs.field(default=10_000, validator=_positive)
    maxPendingPerKeycard: int = attrs.field(default=16, validator=_positive)
    maxSessionsPerKeycard: int = attrs.field(default=256, validator=_positive)


@attrs.define
class Ticket:
    """
    A ticket the bouncer granted: single use, bound to the client's
    keycard and avatar and to one service name.

    @ivar holder: what redeemed it (see L{TicketGranter}), once redeemed.
    """

    ticketId: str
    keycardId: str
    clientName: str
    serviceName: str
    secret: bytes = attrs.field(repr=False)
    expires: float
    holder: Any = None


@attrs.frozen
class Session:
    """
    A session the bouncer vouched for: the client's keycard it ends with,
    and the service registration to tell.
    """

    sessionId: str
    keycardId: str
    holder: Any


class TicketTable:
    """
    Tickets by id, with one timer for the earliest expiry (see
    L{ExpiryTimers}), and sessions by id, indexed by client keycard and by
    service registration.
    """

    def __init__(self, clock: IReactorTime, limits: TicketLimits) -> None:
        self.clock = clock
        self.limits = limits
        self._tickets: dict[str, Ticket] = {}
        self._pendingOf: dict[str, set[str]] = defaultdict(set)
        self._sessions: dict[str, Session] = {}
        self._sessionsOf: dict[str, set[str]] = defaultdict(set)
        self._sessionsAt: dict[object, set[str]] = defaultdict(set)
        self._timers = ExpiryTimers(clock, self._expired)

    def __len__(self) -> int:
        """
        Tickets waiting for their confirmation.
        """
        return len(self._tickets)

    def room(self, keycardId: str) -> bool:
        """
        Whether one more ticket of C{keycardId} fits in the limits.
        """
        limits = self.limits
        return (
            len(self._tickets) < limits.maxPending
            and len(self._pendingOf.get(keycardId, ())) < limits.maxPendingPerKeycard
            and len(self._sessionsOf.get(keycardId, ())) < limits.maxSessionsPerKeycard
        )

    def add(self, ticket: Ticket) -> None:
        """
        Keep C{ticket} until its expiry, its confirmation or its refusal.
        """
        self._tickets[ticket.ticketId] = ticket
        self._pendingOf[ticket.keycardId].add(ticket.ticketId)
        self._timers.schedule(ticket.ticketId, ticket.expires)

    def get(self, ticketId: str) -> Ticket | None:
        """
        The ticket C{ticketId} if it is pending and not expired.
        """
        ticket = self._tickets.get(ticketId)
        if ticket is None or ticket.expires <= self.clock.seconds():
            return None
        return ticket

    def take(self, ticketId: str) -> Ticket | None:
        """
        Remove the ticket C{ticketId}; it can never be used again.

        @return: it, if it was pending (expired or not).
        """
        ticket = self._tickets.pop(ticketId, None)
        if ticket is None:
            return None
        self._timers.cancel(ticketId)
        _discard(self._pendingOf, ticket.keycardId, ticketId)
        return ticket

    def _expired(self, ticketIds: list[str]) -> None:
        for ticketId in ticketIds:
            self.take(ticketId)

    def establish(self, ticket: Ticket) -> bool:
        """
        Record the session C{ticket} became.

        @return: C{False} if the client's keycard has its maximum of
            sessions.
        """
        keycardId = ticket.keycardId
        if len(self._sessionsOf[keycardId]) >= self.limits.maxSessionsPerKeycard:
            return False
        self._sessions[ticket.ticketId] = Session(
            ticket.ticketId, keycardId, ticket.holder
        )
        self._sessionsOf[keycardId].add(ticket.ticketId)
        self._sessionsAt[ticket.holder].add(ticket.ticketId)
        return True

    def end(self, sessionId: str, holder: object = None) -> Session | None:
        """
        Forget a session (only if C{holder}'s, when given).
        """
        session = self._sessions.get(sessionId)
        if session is None or (holder is not None and session.holder is not holder):
            return None
        del self._sessions[sessionId]
        _discard(self._sessionsOf, session.keycardId, sessionId)
        _discard(self._sessionsAt, session.holder, sessionId)
        return session

    def endKeycard(self, keycardId: str) -> list[Session]:
        """
        Drop the tickets of client keycard C{keycardId}, and forget its
        sessions.

        @return: the sessions forgotten.
        """
        for ticketId in list(self._pendingOf.get(keycardId, ())):
            self.take(ticketId)
        ended = []
        for sessionId in list(self._sessionsOf.get(keycardId, ())):
            session = self.end(sessionId)
            if session is not None:
                ended.append(session)
        return ended

    def endHolder(self, holder: object) -> int:
        """
        Forget the sessions of a service registration that went away.

        @return: how many.
        """
        ids = list(self._sessionsAt.get(holder, ()))
        for sessionId in ids:
            self.end(sessionId)
        return len(ids)

    def sessionIds(self) -> list[str]:
        """
        The sessions established and not ended.
        """
        return list(self._sessions)

    def stop(self) -> None:
        """
        Cancel the expiry timer; tickets still pending stay until taken.
        """
        self._timers.stop()


def _discard(index: dict[Any, set[str]], key: object, value: str) -> None:
    values = index.get(key)
    if values is not None:
        values.discard(value)
        if not values:
            del index[key]
