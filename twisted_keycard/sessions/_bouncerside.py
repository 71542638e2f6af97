"""
Brokered sessions on a bouncer's PB face: a realm wrapping the realm of
the bouncer's requester (the bouncer service's L{BouncerRealm}, or any PB
realm) so that every perspective also grants tickets to its client, and
the perspectives of avatars named as services redeem and confirm them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from inspect import signature
from typing import Any

from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.spread import pb
from zope.interface import implementer

from twisted_keycard._printable import printable
from twisted_keycard.error import SessionRefused
from twisted_keycard.pb import peerAddress
from twisted_keycard.sessions._granter import ServiceRegistration, TicketGranter
from twisted_keycard.sessions._interfaces import (
    ISessionListener,
    SessionGrant,
    validName,
    validTicketId,
)

#: Session ids one C{ended} call may carry, at most.
MAX_IDS = 4096


@implementer(ISessionListener)
class _RemoteListener:
    """
    Tells a service in another process, through its mind, which sessions
    ended.
    """

    log = Logger()

    def __init__(self, mind: pb.RemoteReference) -> None:
        self.mind = mind

    def endSessions(self, sessionIds: Sequence[str]) -> None:
        try:
            d = self.mind.callRemote("endSessions", list(sessionIds))
        except pb.DeadReferenceError:
            return
        d.addErrback(
            lambda f: self.log.warn(
                "service unreachable: {error}", error=printable(f.getErrorMessage())
            )
        )

    def endAllSessions(self) -> None:
        try:
            self.mind.callRemote("endAllSessions").addErrback(lambda f: None)
        except pb.DeadReferenceError:
            return


@implementer(IRealm)
class TicketGrantingRealm:
    """
    A realm whose PB perspectives are those of C{realm}, which also answer
    C{ticket} (for any client); the perspectives of the avatars named in
    C{services} also answer C{redeem}, C{confirm} and C{ended}, and their
    mind (a L{pb.Referenceable}) is told C{endSessions} and
    C{endAllSessions}.
    """

    def __init__(
        self,
        realm: IRealm,
        granter: TicketGranter,
        services: Collection[str],
        requesterName: str | None = None,
        audience: str | None = None,
    ) -> None:
        """
        @param requesterName: the name of the requester in front of this
            realm (the service's C{--requester-name}): a client asks for
            tickets with a keycard issued through it only.
        @param audience: the audience name of ticket granting (the
            service's C{NAME/tickets}): a client asks for tickets with a
            keycard whose audience names it only (see
            L{TicketGranter.grant}); C{None} not to check.
        """
        self.realm = realm
        self.granter = granter
        self.services = frozenset(services)
        self.requesterName = requesterName
        self.audience = audience

    def requestAvatar(self, avatarId: Any, mind: object, *interfaces: Any) -> Any:
        d = maybeDeferred(self.realm.requestAvatar, avatarId, mind, *interfaces)
        return d.addCallback(self._wrap, avatarId, mind)

    def _wrap(self, login: Any, avatarId: str, mind: object) -> Any:
        interface, inner, logout = login
        registration = None
        if avatarId in self.services:
            registration = self.granter.register(avatarId)
            if isinstance(mind, pb.RemoteReference):
                registration.listen(_RemoteListener(mind))
        perspective = SessionPerspective(
            inner,
            self.granter,
            avatarId,
            registration,
            self.requesterName,
            self.audience,
        )

        def out() -> None:
            if registration is not None:
                registration.close()
            logout()

        return interface, perspective, out


class SessionPerspective(pb.Avatar):
    """
    A perspective that adds C{ticket} (and for a service, C{redeem},
    C{confirm}, C{ended}) to another's methods.  Every refusal is
    L{SessionRefused}.
    """

    def __init__(
        self,
        inner: pb.IPerspective,
        granter: TicketGranter,
        avatarId: str,
        registration: ServiceRegistration | None,
        requesterName: str | None,
        audience: str | None = None,
    ) -> None:
        self.inner = inner
        self.granter = granter
        self.avatarId = avatarId
        self.registration = registration
        self.requesterName = requesterName
        self.audience = audience

    def perspectiveMessageReceived(
        self, broker: pb.Broker, message: str, args: object, kw: object
    ) -> object:
        method = self._methods(broker).get(message)
        if method is None:
            return self.inner.perspectiveMessageReceived(broker, message, args, kw)
        try:
            args = broker.unserialize(args, self)
            kw = broker.unserialize(kw, self)
            if not isinstance(args, tuple | list) or not isinstance(kw, dict):
                raise TypeError("arguments that are not a tuple and a dictionary")
            signature(method).bind(*args, **kw)
        except Exception:
            raise SessionRefused() from None
        return broker.serialize(method(*args, **kw), self)

    def _methods(self, broker: pb.Broker) -> dict[str, Callable[..., Deferred[Any]]]:
        # A client's call of a service's method is refused, not passed on.
        return {
            "ticket": lambda serviceName, keycardId: self._ticket(
                broker, serviceName, keycardId
            ),
            "redeem": self._redeem,
            "confirm": self._confirm,
            "ended": self._ended,
        }

    def _ticket(
        self, broker: pb.Broker, serviceName: object, keycardId: object
    ) -> Deferred[dict[str, object]]:
        """
        A ticket for C{serviceName}, under keycard C{keycardId}, which this
        avatar must hold on this connection's address.
        """
        if not (validName(serviceName) and validTicketId(keycardId)):
            raise SessionRefused()
        assert isinstance(keycardId, str) and isinstance(serviceName, str)
        d = self.granter.grant(
            keycardId,
            serviceName,
            avatarId=self.avatarId,
            requesterName=self.requesterName,
            address=peerAddress(broker),
            audience=self.audience,
        )
        return d.addCallback(SessionGrant.toWire)

    def _registration(self) -> ServiceRegistration:
        registration = self.registration
        if registration is None:
            raise SessionRefused()
        return registration

    def _redeem(self, ticketId: object) -> Deferred[dict[str, object]]:
        if not validTicketId(ticketId):
            raise SessionRefused()
        assert isinstance(ticketId, str)
        return self._registration().redeem(ticketId).addCallback(SessionGrant.toWire)

    def _confirm(
        self,
        ticketId: object,
        clientNonce: object,
        serviceNonce: object,
        confirmation: object,
    ) -> Deferred[None]:
        if not (
            validTicketId(ticketId)
            and isinstance(clientNonce, bytes)
            and isinstance(serviceNonce, bytes)
            and isinstance(confirmation, bytes)
        ):
            raise SessionRefused()
        assert isinstance(ticketId, str)
        return self._registration().confirm(
            ticketId, clientNonce, serviceNonce, confirmation
        )

    def _ended(self, sessionIds: object) -> Deferred[None]:
        if not isinstance(sessionIds, list) or len(sessionIds) > MAX_IDS:
            raise SessionRefused()
        ids = [s for s in sessionIds if isinstance(s, str)]
        return self._registration().ended(ids)
