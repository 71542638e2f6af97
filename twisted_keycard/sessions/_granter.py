"""
The bouncer's side of brokered sessions: it grants tickets to clients that
hold keycards, lets the services they name redeem and confirm them, and
ends the sessions with their clients' keycards.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TypeVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from twisted_keycard._printable import printable, printables
from twisted_keycard.bouncer._bouncer import Bouncer, newKeycardId
from twisted_keycard.error import SessionRefused
from twisted_keycard.sessions._keys import (
    NONCE_BYTES,
    SECRET_BYTES,
    SessionKeys,
    Transcript,
    matches,
    sessionSecret,
)
from twisted_keycard.sessions._records import SessionGrant
from twisted_keycard.sessions._registration import ServiceRegistration
from twisted_keycard.sessions._tickets import Ticket, TicketLimits, TicketTable

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
        limits: TicketLimits = TicketLimits(),  # noqa: B008 - frozen
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
    ) -> Deferred[SessionGrant]:
        """
        A ticket for the client that holds keycard C{keycardId} to present
        to service C{serviceName}.

        @param avatarId: the client's avatar id; the keycard must be its.
        @param requesterName: if given, the keycard must have been issued
            through this requester.
        @param address: if given, the keycard must have been issued to a
            client at this address.
        @return: a L{Deferred} firing with the L{SessionGrant}, or failing
            with L{SessionRefused}.
        """
        return self._settle(
            self._grant, keycardId, serviceName, avatarId, requesterName, address
        )

    def _grant(
        self,
        keycardId: str,
        serviceName: str,
        avatarId: str,
        requesterName: str | None,
        address: str | None,
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
        if not any(r.listener is not None for r in self._services.get(serviceName, ())):
            raise _Refusal(f"ticket asked by {who}, which is not connected")
        if not self.table.room(keycardId):
            raise _Refusal(f"ticket asked by {who}: too many tickets or sessions")
        ticketId = self._newId()
        secret = sessionSecret(
            self._randomBytes(SECRET_BYTES), ticketId, avatarId, serviceName
        )
        expires = min(now + self.table.limits.timeout, record.expires)
        self.table.add(
            Ticket(ticketId, keycardId, avatarId, serviceName, secret, expires)
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
