"""
The service's side of a brokered session: a PB root whose clients come
with a ticket, each connection's lifecycle as an Automat machine, the
broker that seals the connection once confirmed, and the service's link to
a bouncer service in another process.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from inspect import signature
from typing import Any, Protocol

import attrs
from automat import TypeMachineBuilder
from twisted.application.internet import ClientService
from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.logger import Logger
from twisted.spread import banana, pb
from twisted.spread.flavors import IPBRoot
from twisted.spread.interfaces import IJellyable
from zope.interface import implementer

from twisted_keycard._printable import printable
from twisted_keycard._shares import FairShares, checkCount
from twisted_keycard.error import SessionRefused
from twisted_keycard.keycard import IAnswerer
from twisted_keycard.pb import (
    ConnectionLimits,
    KeycardBroker,
    KeycardClientFactory,
    KeycardServerFactory,
    LinearDecoder,
    describe,
    encodeInto,
)
from twisted_keycard.sessions._interfaces import (
    MAC_BYTES,
    NONCE_BYTES,
    ISessionListener,
    ITicketRedeemer,
    SessionGrant,
    SessionKeys,
    Transcript,
    matches,
    messageMac,
    validTicketId,
)

#: The first item of every sealed message.
SEALED = b"sealed"

#: Bytes of one piece of a sealed message's payload, at most (banana
#: takes strings of at most 640 KiB).
CHUNK = 512 * 1024


@attrs.define
class _Seal:
    sendKey: bytes = attrs.field(repr=False)
    receiveKey: bytes = attrs.field(repr=False)
    onBroken: Callable[[str], object]
    onMessage: Callable[[], object]
    sent: int = 0
    received: int = 0


class _PayloadDecoder(LinearDecoder):
    """
    Decodes the payload of one sealed message with its broker's
    vocabulary and budget.
    """

    def __init__(self, broker: KeycardBroker) -> None:
        super().__init__(broker.isClient)
        prefixLimit = broker.prefixLimit
        assert prefixLimit is not None, "set by connectionMade"
        self.setPrefixLimit(prefixLimit)
        self.currentDialect = b"pb"
        self.maxObjects = broker.maxObjects
        self.maxDepth = broker.maxDepth
        self.items: list[object] = []

    def callExpressionReceived(self, obj: object) -> None:
        self.items.append(obj)


def _noop(*args: object) -> None:
    pass


class SessionBroker(KeycardBroker):
    """
    A L{KeycardBroker} that L{seal}s its connection once a brokered
    session is established on it: both ends seal at the same message (the
    client's C{confirm} call), and neither can go back.
    """

    _seal: _Seal | None = None

    @property
    def sealed(self) -> bool:
        """
        Whether every message either way is sealed now.
        """
        return self._seal is not None

    def seal(
        self,
        sendKey: bytes,
        receiveKey: bytes,
        *,
        onBroken: Callable[[str], object] = _noop,
        onMessage: Callable[[], object] = _noop,
    ) -> None:
        """
        Seal every message from now on: those sent with C{sendKey}, those
        received checked with C{receiveKey}, each direction numbered from 0.

        @param onBroken: called with the reason when a received message
            fails, after the connection is dropped.
        @param onMessage: called for each sealed message received intact.
        @raise RuntimeError: if already sealed.
        """
        if self._seal is not None:
            raise RuntimeError("this connection is sealed already")
        self._seal = _Seal(sendKey, receiveKey, onBroken, onMessage)

    def sendEncoded(self, obj: object) -> None:
        seal = self._seal
        if seal is None:
            super().sendEncoded(obj)
            return
        out = bytearray()
        encodeInto(self, obj, out, self.outgoingSymbols)
        payload = bytes(out)
        sequence = seal.sent
        seal.sent += 1
        mac = messageMac(seal.sendKey, sequence, payload)
        chunks = [payload[i : i + CHUNK] for i in range(0, len(payload), CHUNK)]
        super().sendEncoded([SEALED, sequence, mac, *chunks])

    def callExpressionReceived(self, obj: object) -> None:
        seal = self._seal
        if seal is None or self._dropped:
            super().callExpressionReceived(obj)
            return
        payload = _payload(obj)
        if payload is None:
            self._broken(seal, "a message that is not sealed")
            return
        sequence, mac, data = payload
        if sequence != seal.received:
            self._broken(seal, "a replayed or reordered message")
            return
        if not hmac.compare_digest(mac, messageMac(seal.receiveKey, sequence, data)):
            self._broken(seal, "a message that fails its MAC")
            return
        seal.received += 1
        decoder = _PayloadDecoder(self)
        try:
            decoder.dataReceived(data)
        except banana.BananaError:
            decoder.items = []
        if len(decoder.items) != 1 or decoder.pendingBytes or decoder.listStack:
            self._broken(seal, "a sealed message that is not one PB command")
            return
        seal.onMessage()
        super().callExpressionReceived(decoder.items[0])

    def _broken(self, seal: _Seal, reason: str) -> None:
        self.drop("dropping {peer}: {reason}; its session ends", reason=reason)
        seal.onBroken(reason)


def _payload(obj: object) -> tuple[int, bytes, bytes] | None:
    """
    The sequence number, MAC and payload of a sealed message, or C{None}
    if C{obj} is not one.
    """
    if not (isinstance(obj, list) and len(obj) >= 4 and obj[0] == SEALED):
        return None
    sequence, mac, chunks = obj[1], obj[2], obj[3:]
    if type(sequence) is not int or not isinstance(mac, bytes) or len(mac) != MAC_BYTES:
        return None
    if not all(isinstance(chunk, bytes) for chunk in chunks):
        return None
    data: Any = b"".join(chunks)
    return sequence, mac, data


#: What a realm gives to log an avatar out.
Logout = Callable[[], object]


@dataclass
class Pending:
    """
    A session being set up: the redeemed ticket, the transcript, the keys
    and the service's proof.
    """

    grant: SessionGrant
    transcript: Transcript
    keys: SessionKeys
    proof: bytes


class Sessions(Protocol):
    """
    What a connection needs of its root.
    """

    redeemer: ITicketRedeemer
    clock: IReactorTime
    idleTimeout: float
    log: Logger

    def _track(
        self, sessionId: str, clientName: str, inputs: SessionInputs
    ) -> None: ...

    def _untrack(self, sessionId: str) -> None: ...


class SessionInputs(Protocol):
    """
    The events in the life of one connection to a session root.
    """

    def beginOpen(self) -> bool:
        """
        C{open} was called.

        @return: C{False} if it must be refused (not in auth mode).
        """

    def redeemed(self, pending: Pending) -> bool:
        """
        The bouncer redeemed the ticket.

        @return: C{False} if the connection is going.
        """

    def beginConfirm(self) -> Pending | None:
        """
        C{confirm} was called.

        @return: the session being set up, or C{None} if the call must be
            refused.
        """

    def established(self, logout: Logout) -> bool:
        """
        The bouncer confirmed the session and the realm gave its avatar.

        @return: C{False} if the connection is going: the avatar is logged
            out at once.
        """

    def refuse(self, reason: str) -> None:
        """
        A step was refused: close the connection once the refusal is sent.
        """

    def end(self, reason: str) -> None:
        """
        End the session: revoked, idle, broken, or a step taken again.
        """

    def connectionLost(self) -> None:
        """
        The connection is gone.
        """


@dataclass
class SessionCore:
    """
    What the machine of one connection works with.

    @ivar sessionId: the ticket's id, once C{confirm} was called.
    @ivar lastSeen: when the client last sent an intact sealed message.
    """

    broker: SessionBroker
    root: Sessions
    pending: Pending | None = None
    sessionId: str | None = None
    logout: Logout | None = None
    timer: IDelayedCall | None = None
    lastSeen: float = 0.0
    finished: bool = False

    def touch(self) -> None:
        self.lastSeen = self.root.clock.seconds()

    def close(self, reason: str) -> None:
        """
        Close the connection once what was written is sent (a refusal).
        """
        transport = self.broker.transport
        if transport is None or self.broker.disconnected:
            return
        peer = transport.getPeer()
        self.root.log.info(
            "closing session connection from {peer}: {reason}",
            peer=printable(getattr(peer, "host", peer)),
            reason=reason,
        )
        self.root.clock.callLater(0, transport.loseConnection)

    def startIdle(self, reap: Callable[[], None]) -> None:
        self.touch()
        timeout = self.root.idleTimeout

        def check() -> None:
            idle = self.root.clock.seconds() - self.lastSeen
            if idle >= timeout:
                self.timer = None
                reap()
            else:
                self.timer = self.root.clock.callLater(timeout - idle, check)

        self.timer = self.root.clock.callLater(timeout, check)

    def finish(self) -> None:
        """
        Log the avatar out, if there is one, and tell the bouncer the
        session ended, once.
        """
        if self.logout is not None:
            logout, self.logout = self.logout, None
            try:
                logout()
            except Exception:
                self.root.log.failure("logout of a session failed")
        if self.finished:
            return
        self.finished = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if self.sessionId is not None:
            self.root.log.info(
                "session {sessionId} closed",
                event="session.closed",
                sessionId=printable(self.sessionId),
            )
            self.root._untrack(self.sessionId)
            d = self.root.redeemer.ended([self.sessionId])
            d.addErrback(
                lambda f: self.root.log.warn(
                    "could not tell the bouncer a session ended: {error}",
                    error=printable(f.getErrorMessage()),
                )
            )


def _makeMachine() -> Callable[[SessionCore], SessionInputs]:
    machine = TypeMachineBuilder(SessionInputs, SessionCore)
    Fresh = machine.state("Fresh")
    Opening = machine.state("Opening")
    Opened = machine.state("Opened")
    Confirming = machine.state("Confirming")
    Established = machine.state("Established")
    Closing = machine.state("Closing")
    Gone = machine.state("Gone")
    live = [Fresh, Opening, Opened, Confirming, Established]

    Fresh.upon(SessionInputs.beginOpen).to(Opening).returns(True)

    @Opening.upon(SessionInputs.redeemed).to(Opened)
    def redeemed(c: SessionInputs, s: SessionCore, pending: Pending) -> bool:
        s.pending = pending
        return True

    @Opened.upon(SessionInputs.beginConfirm).to(Confirming)
    def confirming(c: SessionInputs, s: SessionCore) -> Pending | None:
        pending = s.pending
        assert pending is not None
        s.pending = None
        s.sessionId = pending.grant.ticketId
        s.root._track(s.sessionId, pending.grant.clientName, c)
        return pending

    @Confirming.upon(SessionInputs.established).to(Established)
    def established(c: SessionInputs, s: SessionCore, logout: Logout) -> bool:
        s.logout = logout
        s.startIdle(lambda: c.end("idle"))
        s.broker.loggedIn()
        return True

    # Leaving auth mode is for good: open or confirm out of turn, a
    # refusal or an end closes the connection.

    def again(c: SessionInputs, s: SessionCore) -> bool:
        s.close("a step out of order")
        return False

    def againConfirm(c: SessionInputs, s: SessionCore) -> Pending | None:
        s.close("a step out of order")
        return None

    def closing(c: SessionInputs, s: SessionCore, reason: str) -> None:
        s.close(reason)

    for state in live:
        state.upon(SessionInputs.refuse).to(Closing)(closing)
        state.upon(SessionInputs.end).to(Closing)(closing)
        if state is not Fresh:
            state.upon(SessionInputs.beginOpen).to(Closing)(again)
        if state is not Opened:
            state.upon(SessionInputs.beginConfirm).to(Closing)(againConfirm)

    def lost(c: SessionInputs, s: SessionCore) -> None:
        s.finish()

    for state in [*live, Closing]:
        state.upon(SessionInputs.connectionLost).to(Gone)(lost)

    # Going or gone: nothing new starts, and what arrives late is undone.

    def tooLate(c: SessionInputs, s: SessionCore, logout: Logout) -> bool:
        s.logout = logout
        s.finish()
        return False

    for state in (Closing, Gone):
        state.upon(SessionInputs.beginOpen).loop().returns(False)
        state.upon(SessionInputs.redeemed).loop().returns(False)
        state.upon(SessionInputs.beginConfirm).loop().returns(None)
        state.upon(SessionInputs.established).loop()(tooLate)
        state.upon(SessionInputs.refuse).loop().returns(None)
        state.upon(SessionInputs.end).loop().returns(None)
    Gone.upon(SessionInputs.connectionLost).loop().returns(None)

    return machine.build()


#: Builds the machine of one connection around its L{SessionCore}.
SessionMachine = _makeMachine()


@attrs.frozen
class SessionConnection:
    """
    One client connection of a C{SessionRoot}: its machine, to feed events
    to, and its core, to read what it holds.
    """

    core: SessionCore
    inputs: SessionInputs

    @classmethod
    def new(cls, broker: SessionBroker, root: Sessions) -> SessionConnection:
        """
        The lifecycle of a new connection, in state B{fresh}.
        """
        core = SessionCore(broker, root)
        return cls(core, SessionMachine(core))


#: Seconds a session may go without a message from its client, by default.
IDLE_TIMEOUT = 300.0

#: Sessions (and confirmations under way) one root holds at most, by default.
MAX_SESSIONS = 10_000

#: Sessions of one client (avatar) one root holds at most, by default.
MAX_SESSIONS_PER_CLIENT = 100


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
        maxSessionsPerClient: int = MAX_SESSIONS_PER_CLIENT,
    ) -> None:
        """
        @param redeemer: the bouncer, as this service knows it: a
            L{TicketGranter} registration in this process, or a
            L{RemoteTicketRedeemer}.  This root listens to it.
        @param realm: gives the avatars, asked with the client's name.
        @param idleTimeout: seconds after the client's last message at
            which a session is reaped.
        @param maxSessions: sessions, and confirmations under way, at most.
        @param maxSessionsPerClient: sessions, and confirmations under way,
            of one client (the avatar the bouncer vouches for) at most.

        The sessions are shared fairly: a client's new session ends its own
        oldest when it holds C{maxSessionsPerClient}, or when all
        C{maxSessions} are taken and it holds as many as any other client;
        otherwise, with all taken, the oldest of the client holding the
        most ends.  So one client, however many keycards it logs in with,
        never ends another's sessions while it holds more.
        """
        if not idleTimeout > 0:
            raise ValueError("idleTimeout must be positive")
        checkCount("maxSessions", maxSessions)
        checkCount("maxSessionsPerClient", maxSessionsPerClient)
        self.redeemer = redeemer
        self.realm = realm
        self.clock = clock
        self.idleTimeout = idleTimeout
        self._connections: dict[pb.Broker, SessionConnection] = {}
        self._sessions: FairShares[str, str, SessionInputs] = FairShares(
            maxSessions, maxSessionsPerClient
        )
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

    def _track(self, sessionId: str, clientName: str, inputs: SessionInputs) -> None:
        for _, pushed in self._sessions.put(sessionId, clientName, inputs):
            if pushed is not inputs:
                pushed.end("pushed out by a newer session (too many sessions)")

    def _untrack(self, sessionId: str) -> None:
        self._sessions.pop(sessionId)

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


class _Mind(pb.Referenceable):
    def __init__(self, link: RemoteTicketRedeemer) -> None:
        self._link = link

    def remote_endSessions(self, sessionIds: object) -> None:
        listener = self._link._listener
        if isinstance(sessionIds, list) and listener is not None:
            listener.endSessions([s for s in sessionIds if isinstance(s, str)])

    def remote_endAllSessions(self) -> None:
        self._link._endAll()


@implementer(ITicketRedeemer)
class RemoteTicketRedeemer:
    """
    The bouncer service, as a service in another process reaches it: it
    logs in with its own keycard kinds (its avatar id is the service's
    name, which the service must list in C{--services}), reconnects with
    backoff when the connection drops, and tells its listener to end every
    session when it does.
    """

    log = Logger()

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        answerers: Sequence[IAnswerer],
        *,
        clock: IReactorTime,
        retryPolicy: Callable[[int], float] | None = None,
    ) -> None:
        self._answerers = list(answerers)
        self._listener: ISessionListener | None = None
        self._perspective: pb.RemoteReference | None = None
        self._factory = KeycardClientFactory()
        self._service = ClientService(
            endpoint,
            self._factory,
            retryPolicy=retryPolicy,
            clock=clock,
            prepareConnection=self._prepare,
        )

    def startService(self) -> None:
        self._service.startService()

    def stopService(self) -> Deferred[None]:
        d: Deferred[None] = self._service.stopService()
        return d

    def whenConnected(self) -> Deferred[None]:
        """
        A L{Deferred} firing once logged in to the bouncer.
        """
        d: Deferred[Any] = self._service.whenConnected()
        return d.addCallback(lambda _: None)

    def _prepare(self, broker: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(self._login(broker))

    async def _login(self, broker: pb.Broker) -> None:
        perspective = await self._factory.login(self._answerers, _Mind(self))
        broker.notifyOnDisconnect(lambda: self._lost(perspective))
        self._perspective = perspective
        self.log.info("connected to the bouncer for sessions")

    def _lost(self, perspective: pb.RemoteReference) -> None:
        if self._perspective is perspective:
            self._perspective = None
        self.log.info("lost the bouncer: ending every session")
        self._endAll()

    def _endAll(self) -> None:
        if self._listener is not None:
            self._listener.endAllSessions()

    def listen(self, listener: ISessionListener) -> None:
        self._listener = listener

    async def _call(self, method: str, *args: object) -> Any:
        perspective = self._perspective
        if perspective is None or perspective.broker.disconnected:
            raise SessionRefused()
        try:
            return await perspective.callRemote(method, *args)
        except Exception:
            raise SessionRefused() from None

    def redeem(self, ticketId: str) -> Deferred[SessionGrant]:
        async def redeem() -> SessionGrant:
            return SessionGrant.fromWire(await self._call("redeem", ticketId))

        return Deferred.fromCoroutine(redeem())

    def confirm(
        self,
        ticketId: str,
        clientNonce: bytes,
        serviceNonce: bytes,
        confirmation: bytes,
    ) -> Deferred[None]:
        async def confirm() -> None:
            await self._call(
                "confirm", ticketId, clientNonce, serviceNonce, confirmation
            )

        return Deferred.fromCoroutine(confirm())

    def ended(self, sessionIds: Sequence[str]) -> Deferred[None]:
        async def ended() -> None:
            # A service that lost the bouncer was forgotten there already.
            if self._perspective is not None:
                await self._call("ended", list(sessionIds))

        return Deferred.fromCoroutine(ended())
