"""
The bouncer's side of brokered sessions: it grants tickets to clients that
hold keycards, keeps them (single use, expiring, bounded) until the service
they name redeems and confirms them, and ends sessions when their keycards
end.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from twisted_keycard._printable import printable, printables
from twisted_keycard._shares import FairShares, count, positive
from twisted_keycard.bouncer import Bouncer, ExpiryTimers, newKeycardId
from twisted_keycard.error import SessionRefused
from twisted_keycard.sessions._interfaces import (
    NONCE_BYTES,
    SECRET_BYTES,
    ISessionListener,
    ITicketRedeemer,
    SessionGrant,
    SessionKeys,
    Transcript,
    matches,
    sessionSecret,
)


@attrs.frozen
class TicketLimits:
    """
    Limits on a bouncer's tickets and sessions.

    Tickets are shared fairly: a client's new ticket pushes out the oldest
    of its own keycard when that keycard holds C{maxPendingPerKeycard}, and
    the oldest of its own avatar's when the avatar holds
    C{maxPendingPerAvatar}, or holds as many as any other avatar when all
    C{maxPending} places are taken; only then does an avatar that holds
    more give way.  One account, whatever its number of keycards, never
    pushes out another's tickets.

    @ivar timeout: seconds from a ticket's grant to its confirmation, at
        most: the whole exchange takes a few round trips.
    @ivar maxPending: tickets granted and not yet confirmed, in all.
    @ivar maxPendingPerKeycard: such tickets of one client keycard.
    @ivar maxPendingPerAvatar: such tickets of one avatar, all its keycards
        together.
    @ivar maxSessionsPerKeycard: sessions established under one client
        keycard and not ended.
    """

    timeout: float = attrs.field(default=5.0, validator=positive)
    maxPending: int = attrs.field(default=10_000, validator=count)
    maxPendingPerKeycard: int = attrs.field(default=16, validator=count)
    maxPendingPerAvatar: int = attrs.field(default=256, validator=count)
    maxSessionsPerKeycard: int = attrs.field(default=256, validator=count)


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
    Tickets by id, shared fairly between avatars (see L{TicketLimits}),
    with one timer for the earliest expiry (see L{ExpiryTimers}), and
    sessions by id, indexed by client keycard and by service registration.
    """

    def __init__(self, clock: IReactorTime, limits: TicketLimits) -> None:
        self.clock = clock
        self._tickets: FairShares[str, str, Ticket] = FairShares(
            limits.maxPending, limits.maxPendingPerAvatar
        )
        self.limits = limits
        self._pendingOf: dict[str, dict[str, None]] = defaultdict(dict)
        self._sessions: dict[str, Session] = {}
        self._sessionsOf: dict[str, dict[str, None]] = defaultdict(dict)
        self._sessionsAt: dict[object, dict[str, None]] = defaultdict(dict)
        self._timers = ExpiryTimers(clock, self._expired)

    @property
    def limits(self) -> TicketLimits:
        return self._limits

    @limits.setter
    def limits(self, limits: TicketLimits) -> None:
        self._limits = limits
        self._tickets.size = limits.maxPending
        self._tickets.perOwner = limits.maxPendingPerAvatar

    def __len__(self) -> int:
        """
        Tickets waiting for their confirmation.
        """
        return len(self._tickets)

    def pendingOf(self, avatarId: str) -> int:
        """
        The tickets of C{avatarId} waiting for their confirmation.
        """
        return self._tickets.owned(avatarId)

    def room(self, keycardId: str) -> bool:
        """
        Whether C{keycardId} may have one more session: a new ticket always
        finds a place among the tickets (see L{add}).
        """
        held = self._sessionsOf.get(keycardId, ())
        return len(held) < self.limits.maxSessionsPerKeycard

    def add(self, ticket: Ticket) -> list[Ticket]:
        """
        Keep C{ticket} until its expiry, its confirmation or its refusal,
        pushing out a ticket of its own keycard or avatar, or of the avatar
        that holds the most, to make room (see L{TicketLimits}).

        @return: the tickets pushed out; they can never be used.
        """
        pushed = []
        ofKeycard = self._pendingOf.get(ticket.keycardId, {})
        if len(ofKeycard) >= self.limits.maxPendingPerKeycard:
            oldest = self.take(next(iter(ofKeycard)))
            assert oldest is not None
            pushed.append(oldest)
        for ticketId, gone in self._tickets.put(
            ticket.ticketId, ticket.clientName, ticket
        ):
            self._timers.cancel(ticketId)
            _discard(self._pendingOf, gone.keycardId, ticketId)
            pushed.append(gone)
        self._pendingOf[ticket.keycardId][ticket.ticketId] = None
        self._timers.schedule(ticket.ticketId, ticket.expires)
        return pushed

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
        ticket = self._tickets.pop(ticketId)
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
        if not self.room(keycardId):
            return False
        self._sessions[ticket.ticketId] = Session(
            ticket.ticketId, keycardId, ticket.holder
        )
        self._sessionsOf[keycardId][ticket.ticketId] = None
        self._sessionsAt[ticket.holder][ticket.ticketId] = None
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


def _discard(index: dict[Any, dict[str, None]], key: object, value: str) -> None:
    values = index.get(key)
    if values is not None:
        values.pop(value, None)
        if not values:
            del index[key]


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


_T = TypeVar("_T")


class _Refusal(Exception):
    """
    Why the granter refused, for its log; the peer sees L{SessionRefused}.
    """


class TicketGranter(Service):
    """
    Grants tickets for registered services to clients that hold keycards
    of a L{Bouncer}, in memory (see L{TicketTable}).

    A ticket is granted only for a service that listens now, is bound to
    the client's keycard, avatar and the service's name, is redeemed once
    by that service and confirmed once, within L{TicketLimits.timeout};
    any misuse spends it.  The sessions established end when the client's
    keycard ends at the bouncer: the service is told.  As a service, it
    L{stop}s when stopped.
    """

    log = Logger()

    def __init__(
        self,
        bouncer: Bouncer,
        clock: IReactorTime,
        limits: TicketLimits = TicketLimits(),
        *,
        newId: Callable[[], str] = newKeycardId,
        randomBytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        """
        @param newId: makes ticket ids (at least 128 random bits).
        @param randomBytes: draws ticket secrets.
        """
        self.bouncer = bouncer
        self.clock = clock
        self.table = TicketTable(clock, limits)
        self._newId = newId
        self._randomBytes = randomBytes
        self._services: dict[str, list[ServiceRegistration]] = defaultdict(list)
        bouncer.addEndObserver(self._keycardsEnded)

    def register(self, name: str) -> ServiceRegistration:
        """
        A registration for the service called C{name}: an
        L{ITicketRedeemer} for a service in this process, or for the
        bouncer service's perspective of a service's avatar.
        """
        return ServiceRegistration(self, name)

    def stop(self) -> None:
        """
        Stop: cancel the ticket timer, stop following the bouncer, and tell
        every service to end all its sessions, which could no longer be
        revoked.
        """
        self.table.stop()
        self.bouncer.removeEndObserver(self._keycardsEnded)
        registrations = [r for rs in self._services.values() for r in rs]
        for registration in registrations:
            registration.close()
            if registration.listener is not None:
                registration.listener.endAllSessions()

    def stopService(self) -> Deferred[None] | None:
        self.stop()
        result: Deferred[None] | None = super().stopService()
        return result

    def _settle(self, call: Callable[..., _T], *args: object) -> Deferred[_T]:
        try:
            return succeed(call(*args))
        except _Refusal as e:
            self.log.info(
                "session refused: {reason}",
                event="session.refused",
                reason=str(e),
            )
            return fail(SessionRefused())

    # Clients

    def grant(
        self,
        keycardId: str,
        serviceName: str,
        *,
        avatarId: str,
        requesterName: str | None = None,
        address: str | None = None,
        audience: str | None = None,
    ) -> Deferred[SessionGrant]:
        """
        A ticket for the client that holds keycard C{keycardId} to present
        to service C{serviceName}.

        @param avatarId: the client's avatar id; the keycard must be its.
        @param requesterName: if given, the keycard must have been issued
            through this requester.
        @param address: if given, the keycard must have been issued to a
            client at this address.
        @param audience: if given, the name of the ticket granting face:
            the keycard's audience (L{Bouncer.audienceOf}) must name it, so
            that a keycard got with a token not meant for ticket granting
            gets no ticket.
        @return: a L{Deferred} firing with the L{SessionGrant}, or failing
            with L{SessionRefused}.
        """
        return self._settle(
            self._grant,
            keycardId,
            serviceName,
            avatarId,
            requesterName,
            address,
            audience,
        )

    def _grant(
        self,
        keycardId: str,
        serviceName: str,
        avatarId: str,
        requesterName: str | None,
        address: str | None,
        audience: str | None = None,
    ) -> SessionGrant:
        now = self.clock.seconds()
        record = self.bouncer.held.get(keycardId)
        who = f"{printable(avatarId)} for {printable(serviceName)}"
        if record is None or record.expires <= now:
            raise _Refusal(f"ticket asked by {who} with no keycard held")
        if record.avatarId != avatarId or (
            requesterName is not None and record.requesterName != requesterName
        ):
            raise _Refusal(f"ticket asked by {who} with another avatar's keycard")
        if address is not None and record.address not in (None, address):
            raise _Refusal(f"ticket asked by {who} from another address")
        if audience is not None and audience not in self.bouncer.audienceOf(keycardId):
            raise _Refusal(
                f"ticket asked by {who} with a keycard whose token is not"
                f" for {printable(audience)}"
            )
        if not any(r.listener is not None for r in self._services.get(serviceName, ())):
            raise _Refusal(f"ticket asked by {who}, which is not connected")
        if not self.table.room(keycardId):
            raise _Refusal(f"ticket asked by {who}: too many sessions for its keycard")
        ticketId = self._newId()
        secret = sessionSecret(
            self._randomBytes(SECRET_BYTES), ticketId, avatarId, serviceName
        )
        expires = min(now + self.table.limits.timeout, record.expires)
        pushed = self.table.add(
            Ticket(ticketId, keycardId, avatarId, serviceName, secret, expires)
        )
        for ticket in pushed:
            self.log.info(
                "ticket {ticketId} of {clientName} pushed out by a newer ticket",
                event="session.pushed",
                ticketId=printable(ticket.ticketId),
                clientName=printable(ticket.clientName),
            )
        self.log.info(
            "ticket {ticketId} granted to {clientName} for {serviceName}",
            event="session.granted",
            ticketId=printable(ticketId),
            clientName=printable(avatarId),
            serviceName=printable(serviceName),
        )
        return SessionGrant(ticketId, secret, avatarId, serviceName, expires)

    # Services

    def _listening(self, registration: ServiceRegistration) -> None:
        if (
            not registration.closed
            and registration not in self._services[registration.name]
        ):
            self._services[registration.name].append(registration)

    def _redeem(self, registration: ServiceRegistration, ticketId: str) -> SessionGrant:
        name = printable(registration.name)
        if registration.closed or registration.listener is None:
            raise _Refusal(f"redeem by {name}, which does not listen")
        ticket = self.table.get(ticketId)
        if ticket is None:
            self.table.take(ticketId)
            raise _Refusal(f"redeem by {name} of an unknown or expired ticket")
        if ticket.holder is not None or ticket.serviceName != registration.name:
            # Spent: whoever holds it now, nobody may use it.
            self.table.take(ticketId)
            raise _Refusal(
                f"redeem by {name} of ticket {printable(ticketId)}"
                f" for {printable(ticket.serviceName)}, redeemed before:"
                f" {ticket.holder is not None}"
            )
        ticket.holder = registration
        return SessionGrant(
            ticketId,
            ticket.secret,
            ticket.clientName,
            ticket.serviceName,
            ticket.expires,
        )

    def _confirm(
        self,
        registration: ServiceRegistration,
        ticketId: str,
        clientNonce: bytes,
        serviceNonce: bytes,
        confirmation: bytes,
    ) -> None:
        name = printable(registration.name)
        ticket = self.table.take(ticketId)
        if ticket is None or ticket.expires <= self.clock.seconds():
            raise _Refusal(f"confirm by {name} of an unknown or expired ticket")
        if ticket.holder is not registration or registration.closed:
            raise _Refusal(f"confirm by {name} of a ticket it did not redeem")
        if not all(
            isinstance(n, bytes) and len(n) == NONCE_BYTES
            for n in (clientNonce, serviceNonce)
        ):
            raise _Refusal(f"confirm by {name} with malformed nonces")
        keys = SessionKeys.derive(ticket.secret)
        transcript = Transcript(
            ticketId, ticket.clientName, ticket.serviceName, clientNonce, serviceNonce
        )
        expected = transcript.clientConfirmation(keys, transcript.serviceProof(keys))
        if not matches(confirmation, expected):
            raise _Refusal(f"confirm by {name} with a wrong confirmation")
        if ticket.keycardId not in self.bouncer.held:
            raise _Refusal(f"confirm by {name}: the client's keycard ended")
        if not self.table.establish(ticket):
            raise _Refusal(f"confirm by {name}: too many sessions for the keycard")
        self.log.info(
            "session {sessionId} of {clientName} with {serviceName} established",
            event="session.established",
            sessionId=printable(ticketId),
            clientName=printable(ticket.clientName),
            serviceName=name,
        )

    def _ended(
        self, registration: ServiceRegistration, sessionIds: Sequence[str]
    ) -> None:
        ended = [s for s in sessionIds if self.table.end(s, registration) is not None]
        if ended:
            self.log.info(
                "{serviceName} ended session(s) {sessionIds}",
                event="session.ended",
                serviceName=printable(registration.name),
                sessionIds=printables(ended),
            )

    def _close(self, registration: ServiceRegistration) -> None:
        registration.closed = True
        listening = self._services.get(registration.name, [])
        if registration in listening:
            listening.remove(registration)
            if not listening:
                del self._services[registration.name]
        self.table.endHolder(registration)

    # Keycards

    def _keycardsEnded(self, keycardIds: list[str]) -> None:
        byHolder: dict[ServiceRegistration, list[str]] = defaultdict(list)
        for keycardId in keycardIds:
            for session in self.table.endKeycard(keycardId):
                byHolder[session.holder].append(session.sessionId)
        for registration, ids in byHolder.items():
            self.log.info(
                "ending session(s) {sessionIds} with {serviceName}: keycard ended",
                event="session.ended",
                sessionIds=printables(ids),
                serviceName=printable(registration.name),
            )
            listener = registration.listener
            if listener is None:
                continue
            try:
                listener.endSessions(ids)
            except Exception:
                self.log.failure(
                    "telling {serviceName} to end sessions failed",
                    serviceName=printable(registration.name),
                )
