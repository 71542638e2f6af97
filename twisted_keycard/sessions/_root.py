"""
The service's side of a brokered session: a PB root whose clients come
with a ticket from the bouncer instead of a keycard, prove they hold its
session, and get an avatar of the service's realm on a sealed connection.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from inspect import signature
from typing import Any

from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.spread import pb
from twisted.spread.flavors import IPBRoot
from twisted.spread.interfaces import IJellyable
from zope.interface import implementer

from twisted_keycard._printable import printable
from twisted_keycard.error import SessionRefused
from twisted_keycard.pb._failure import describe
from twisted_keycard.pb._limits import ConnectionLimits
from twisted_keycard.pb._serverfactory import KeycardServerFactory
from twisted_keycard.sessions._broker import SessionBroker
from twisted_keycard.sessions._connection import (
    Pending,
    SessionConnection,
    SessionInputs,
)
from twisted_keycard.sessions._interfaces import ISessionListener, ITicketRedeemer
from twisted_keycard.sessions._keys import (
    NONCE_BYTES,
    SessionKeys,
    Transcript,
    matches,
)
from twisted_keycard.sessions._records import validTicketId

#: Seconds a session may go without a message from its client, by default.
IDLE_TIMEOUT = 300.0

#: Sessions (and exchanges under way) one root holds at most, by default.
MAX_SESSIONS = 10_000


@implementer(IPBRoot, ISessionListener)
class SessionRoot:
    """
    A PB root object (for L{SessionServerFactory}) that admits clients
    with brokered sessions.

    A connection starts in "auth" mode: the client calls C{open} with its
    ticket, which this root redeems at the bouncer and answers with its
    proof, then C{confirm} with its own, after which the connection is
    sealed (see L{SessionBroker}) and the client gets the avatar the
    realm gives for the client's name as the bouncer vouches for it.
    """

    log = Logger()

    def __init__(
        self,
        redeemer: ITicketRedeemer,
        realm: IRealm,
        *,
        clock: IReactorTime,
        idleTimeout: float = IDLE_TIMEOUT,
        maxSessions: int = MAX_SESSIONS,
    ) -> None:
        """
        @param redeemer: the bouncer, as this service knows it: a
            L{TicketGranter} registration in this process, or a
            L{RemoteTicketRedeemer}.  This root listens to it.
        @param realm: gives the avatars, asked with the client's name.
        @param idleTimeout: seconds after the client's last message at
            which a session is reaped.
        @param maxSessions: sessions, and exchanges under way, at most.
        """
        if not idleTimeout > 0:
            raise ValueError("idleTimeout must be positive")
        self.redeemer = redeemer
        self.realm = realm
        self.clock = clock
        self.idleTimeout = idleTimeout
        self.maxSessions = maxSessions
        self._connections: dict[pb.Broker, SessionConnection] = {}
        self._sessions: dict[str, SessionInputs] = {}
        redeemer.listen(self)

    def rootObject(self, broker: pb.Broker) -> _SessionDoor:
        if not isinstance(broker, SessionBroker):
            raise TypeError("serve a SessionRoot through a SessionServerFactory")
        self._connectionFor(broker)
        return _SessionDoor(self, broker)

    def sessionIds(self) -> list[str]:
        """
        The sessions established, or being confirmed, on this root.
        """
        return list(self._sessions)

    def _connectionFor(self, broker: SessionBroker) -> SessionConnection:
        connection = self._connections.get(broker)
        if connection is None:
            connection = SessionConnection.new(broker, self)
            if broker.disconnected:
                connection.inputs.connectionLost()
                return connection
            self._connections[broker] = connection
            broker.notifyOnDisconnect(lambda: self._lost(broker))
        return connection

    def _lost(self, broker: pb.Broker) -> None:
        connection = self._connections.pop(broker, None)
        if connection is not None:
            connection.inputs.connectionLost()

    def _track(self, sessionId: str, inputs: SessionInputs) -> None:
        self._sessions[sessionId] = inputs

    def _untrack(self, sessionId: str) -> None:
        self._sessions.pop(sessionId, None)

    # What the bouncer says

    def endSessions(self, sessionIds: Sequence[str]) -> None:
        for sessionId in sessionIds:
            inputs = self._sessions.get(sessionId)
            if inputs is not None:
                inputs.end("its client's keycard ended")

    def endAllSessions(self) -> None:
        for connection in list(self._connections.values()):
            connection.inputs.end("the bouncer is out of reach")

    # What the client says

    async def open(self, broker: SessionBroker, ticketId: object, nonce: object) -> Any:
        inputs = self._connectionFor(broker).inputs
        if not inputs.beginOpen():
            raise SessionRefused()
        if not (validTicketId(ticketId) and _nonce(nonce)):
            inputs.refuse("a malformed open")
            raise SessionRefused()
        assert isinstance(ticketId, str) and isinstance(nonce, bytes)
        if len(self._sessions) >= self.maxSessions:
            inputs.refuse("too many sessions")
            raise SessionRefused()
        try:
            grant = await self.redeemer.redeem(ticketId)
        except Exception as e:
            inputs.refuse(f"ticket refused ({describe(e)})")
            raise SessionRefused() from None
        serviceNonce = secrets.token_bytes(NONCE_BYTES)
        transcript = Transcript(
            grant.ticketId, grant.clientName, grant.serviceName, nonce, serviceNonce
        )
        keys = SessionKeys.derive(grant.secret)
        proof = transcript.serviceProof(keys)
        if not inputs.redeemed(Pending(grant, transcript, keys, proof)):
            raise SessionRefused()
        return [serviceNonce, proof]

    def confirm(
        self, broker: SessionBroker, confirmation: object, mind: object
    ) -> Deferred[Any]:
        connection = self._connectionFor(broker)
        inputs = connection.inputs
        pending = inputs.beginConfirm()
        if pending is None:
            raise SessionRefused()
        # The client sealed its side as it sent this call: every message
        # after it, either way, is sealed.
        broker.seal(
            pending.keys.serviceToClient,
            pending.keys.clientToService,
            onBroken=inputs.end,
            onMessage=connection.core.touch,
        )
        expected = pending.transcript.clientConfirmation(pending.keys, pending.proof)
        if not matches(confirmation, expected):
            inputs.end("a wrong confirmation")
            raise SessionRefused()
        assert isinstance(confirmation, bytes)
        return Deferred.fromCoroutine(
            self._establish(inputs, pending, confirmation, mind)
        )

    async def _establish(
        self, inputs: SessionInputs, pending: Pending, confirmation: bytes, mind: object
    ) -> Any:
        transcript = pending.transcript
        try:
            await self.redeemer.confirm(
                transcript.ticketId,
                transcript.clientNonce,
                transcript.serviceNonce,
                confirmation,
            )
        except Exception as e:
            inputs.refuse(f"the bouncer refused the session ({describe(e)})")
            raise SessionRefused() from None
        try:
            # twisted.cred types avatar ids as bytes; ours are text.
            avatarId: Any = transcript.clientName
            login: Any = await maybeDeferred(
                self.realm.requestAvatar, avatarId, mind, pb.IPerspective
            )
            _, avatar, logout = login
        except Exception:
            self.log.failure(
                "realm refused avatar {avatarId}",
                avatarId=printable(transcript.clientName),
            )
            inputs.refuse("the realm refused the avatar")
            raise SessionRefused() from None
        if not inputs.established(logout):
            raise SessionRefused()
        self.log.info(
            "session {sessionId} of {clientName} established",
            event="session.opened",
            sessionId=printable(transcript.ticketId),
            clientName=printable(transcript.clientName),
        )
        if not IJellyable.providedBy(avatar):
            avatar = pb.AsReferenceable(avatar, "perspective")
        return avatar


def _nonce(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == NONCE_BYTES


class _SessionDoor(pb.Referenceable):
    """
    The root object one client sees: C{open} and C{confirm}, once each and
    in that order.
    """

    def __init__(self, root: SessionRoot, broker: SessionBroker) -> None:
        self._root = root
        self._broker = broker

    def remoteMessageReceived(
        self, broker: pb.Broker, message: str, args: object, kw: object
    ) -> object:
        """
        Call C{open} or C{confirm} after checking the name and the
        arguments; anything else is refused and closes the connection.
        """
        inputs = self._root._connectionFor(self._broker).inputs
        method = {"open": self.remote_open, "confirm": self.remote_confirm}.get(message)
        try:
            if method is None:
                raise TypeError("no such method")
            args = broker.unserialize(args)
            kw = broker.unserialize(kw)
            if not isinstance(args, tuple | list) or not isinstance(kw, dict):
                raise TypeError("arguments that are not a tuple and a dictionary")
            signature(method).bind(*args, **kw)
        except Exception:
            inputs.refuse("a malformed call")
            raise SessionRefused() from None
        return broker.serialize(method(*args, **kw), self.perspective)

    def remote_open(self, ticketId: object, nonce: object) -> Deferred[Any]:
        """
        Present a ticket and the client's nonce.

        @return: a L{Deferred} firing with C{[serviceNonce, serviceProof]}.
        """
        return Deferred.fromCoroutine(self._root.open(self._broker, ticketId, nonce))

    def remote_confirm(self, confirmation: object, mind: object) -> Deferred[Any]:
        """
        Confirm the session; from this call on, the connection is sealed.

        @return: a L{Deferred} firing with the perspective.
        """
        return self._root.confirm(self._broker, confirmation, mind)


class SessionServerFactory(KeycardServerFactory):
    """
    A L{KeycardServerFactory} for a L{SessionRoot}: its brokers seal their
    connections once a session is established, and the limits on strangers
    (the login deadline, the budget of each message) hold until then.
    """

    protocol = SessionBroker

    def __init__(
        self,
        root: SessionRoot,
        *,
        limits: ConnectionLimits = ConnectionLimits(),  # noqa: B008 - frozen
        clock: IReactorTime | None = None,
    ) -> None:
        super().__init__(root, limits=limits, clock=clock)
