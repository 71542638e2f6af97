"""
The server side of a PB login with keycards: a PB root that forwards
keycards to a bouncer and logs clients in through a twisted.cred realm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from inspect import signature
from typing import Any

import attrs
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime, ISSLTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.spread import pb
from twisted.spread.flavors import IPBRoot, NoSuchMethod
from twisted.spread.interfaces import IJellyable
from zope.interface import implementer

from twisted_keycard._printable import printable
from twisted_keycard.bouncer._interfaces import IBouncer, IRequester
from twisted_keycard.error import (
    InsecureTransport,
    KeycardDenied,
    KeycardRefused,
    MalformedMessage,
)
from twisted_keycard.keycard._address import normalizeAddress
from twisted_keycard.keycard._keycard import ADDRESS_LENGTH, Keycard, KeycardState
from twisted_keycard.keycard._tls import channelBindings
from twisted_keycard.pb._broker import REFUSED, KeycardBroker
from twisted_keycard.pb._connection import ClientConnection, ConnectionInputs
from twisted_keycard.pb._failure import passedOn
from twisted_keycard.pb._guard import ConnectionGuard
from twisted_keycard.pb._limits import ConnectionLimits
from twisted_keycard.pb._portal import rootFromPortal
from twisted_keycard.pb._renewal import Renewal, checkRenewEvery
from twisted_keycard.pb._stocklogin import (
    KEYCARDS_ONLY,
    STOCK_METHODS,
    StockLogin,
    isStockLogin,
)
from twisted_keycard.store._interfaces import IKeycardStore

#: Keycards one connection may hold at once, by default.
MAX_KEYCARDS_PER_CONNECTION = 16


def peerAddress(broker: pb.Broker) -> str | None:
    """
    The client's address as this side of the connection sees it: the host
    of an IP peer (normalized: an IPv4 peer of a dual-stack listener is its
    IPv4 address), else a bounded string form of the peer address.
    """
    transport = broker.transport
    if transport is None:
        return None
    peer = transport.getPeer()
    host = getattr(peer, "host", None)
    if isinstance(host, str):
        return normalizeAddress(host)[:ADDRESS_LENGTH]
    return str(peer)[:ADDRESS_LENGTH]


@implementer(IPBRoot, IRequester)
class KeycardRoot:
    """
    A PB root object (for L{KeycardServerFactory} or L{pb.PBServerFactory})
    that logs clients in with keycards.

    It sets each keycard's C{address} from the connection's peer, its
    C{channelBindings} from this side of the connection's TLS, and its
    C{requesterName}, forwards it to the bouncer, and on success asks the
    portal's realm for the avatar.  It drops a client whose keycard the
    bouncer expires, and removes the keycard when the client goes, even
    when the avatar arrives after that (see L{ClientConnection}).  While a
    client stays connected, its keycards are renewed (see L{Renewal}).
    """

    log = Logger()

    def __init__(
        self,
        bouncer: IBouncer,
        portal: Portal,
        requesterName: str = "requester",
        *,
        maxKeycardsPerConnection: int = MAX_KEYCARDS_PER_CONNECTION,
        clock: IReactorTime | None = None,
        renew: bool = True,
        renewEvery: float | None = None,
        stockLogin: bool = False,
    ) -> None:
        """
        @param bouncer: checks the keycards; it is told to call this root
            back when it expires keycards issued through it.
        @param clock: times renewals, and dropping a client after its
            refusal is sent (for keycard kinds that ask for it); the
            bouncer's C{clock} if it has one, else the global reactor.
        @param portal: the application's portal: its realm gives the
            avatars; its checkers are used only by C{stockLogin} (the
            bouncer checks keycards; see L{fromPortal} for a bouncer over
            the portal's checkers).
        @param requesterName: this requester's name, set in every keycard.
        @param renew: renew the keycards of connected clients through the
            bouncer's C{keepAlive}, so that a session ends only when the
            client leaves, its keycard is revoked or expired by the bouncer,
            or the bouncer's C{maxLifetime} ends; without it, every session
            ends when its keycard's duration does.
        @param renewEvery: seconds between renewals; C{None} for a third of
            the shortest duration among the held keycards.
        @param stockLogin: answer a stock PB client's C{login(username)}
            as PB's own root does, through C{portal}'s checkers (for a
            migration: old and new clients on one port); by default it is
            refused with a L{KeycardRefused}.
        @raise ValueError: for a C{renewEvery} that is not a positive
            number.
        """
        checkRenewEvery(renewEvery)
        if clock is None:
            clock = getattr(bouncer, "clock", None)
        self.bouncer = bouncer
        self.portal = portal
        self.requesterName = requesterName
        self.maxKeycardsPerConnection = maxKeycardsPerConnection
        self.stockLogin = stockLogin
        self._clock = clock
        #: Keycard ids issued through this root, to the connections holding them.
        self._holders: dict[str, ConnectionInputs] = {}
        self._connections: dict[pb.Broker, ClientConnection] = {}
        #: The channel binding data of TLS connections, once computed.
        self._bindings: dict[pb.Broker, Mapping[str, bytes]] = {}
        self._renewal: Renewal | None = None
        if renew:
            self._renewal = Renewal(
                bouncer, requesterName, self._reactor, self._holders, renewEvery
            )
        bouncer.registerRequester(requesterName, self)

    @classmethod
    def fromPortal(
        cls,
        portal: Portal,
        *,
        clock: IReactorTime,
        key: bytes | None = None,
        store: IKeycardStore | None = None,
        requesterName: str = "requester",
        bouncerOptions: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> KeycardRoot:
        """
        A root over an application's portal, its realm and its checkers,
        with a bouncer of its own: see L{rootFromPortal}.
        """
        return rootFromPortal(
            cls,
            portal,
            clock=clock,
            key=key,
            store=store,
            requesterName=requesterName,
            bouncerOptions=bouncerOptions,
            **options,
        )

    def _reactor(self) -> IReactorTime:
        clock = self._clock
        if clock is None:
            from twisted.internet import reactor  # the outermost default

            clock = reactor
        assert clock is not None
        return clock

    def _released(self) -> None:
        if self._renewal is not None:
            self._renewal.released()

    def rootObject(self, broker: pb.Broker) -> _KeycardLogin:
        self._connectionFor(broker)
        return _KeycardLogin(self, broker)

    def keycardIds(self) -> list[str]:
        """
        The ids of the keycards held by connected clients, including those
        whose avatars the realm is still producing.
        """
        return list(self._holders)

    def _connectionFor(self, broker: pb.Broker) -> ClientConnection:
        """
        The lifecycle of C{broker}'s connection, begun on first use.
        """
        connection = self._connections.get(broker)
        if connection is None:
            connection = ClientConnection.new(
                broker, self.bouncer, self._holders, self.log
            )
            if broker.disconnected:
                connection.inputs.connectionLost()
                return connection
            self._connections[broker] = connection
            broker.notifyOnDisconnect(lambda: self._clientGone(broker))
        return connection

    def _bindingsOf(self, broker: pb.Broker) -> Mapping[str, bytes] | None:
        """
        The channel binding data of C{broker}'s connection as this side
        computes it (see L{channelBindings}), computed once; C{None} without
        TLS.
        """
        bindings = self._bindings.get(broker)
        if bindings is None:
            found = channelBindings(broker.transport, asServer=True)
            if not found:
                return None
            bindings = found
            if broker in self._connections:
                self._bindings[broker] = bindings
        return bindings

    def _clientGone(self, broker: pb.Broker) -> None:
        self._bindings.pop(broker, None)
        connection = self._connections.pop(broker, None)
        if connection is not None:
            connection.inputs.connectionLost()
            self._released()

    def kindsFor(self, broker: pb.Broker) -> list[str]:
        """
        The type tags of the keycards the bouncer takes, in its order; over
        TLS, each kind that binds its exchange to the channel is followed by
        its C{channelBoundType}.
        """
        bound = self._bindingsOf(broker) is not None
        tags = []
        for cls in self.bouncer.keycardClasses:
            tags.append(cls.keycardType)
            if bound and cls.channelBoundType is not None:
                tags.append(cls.channelBoundType)
        return tags

    def _takes(self, broker: pb.Broker, keycard: Keycard) -> bool:
        """
        Whether the first message of an exchange can go to the bouncer: its
        kind is one the bouncer takes, and if it binds to the channel, this
        connection can give the binding data.
        """
        kind = keycard.keycardType
        if not any(cls.keycardType == kind for cls in self.bouncer.keycardClasses):
            return False
        return not keycard.bindsChannel() or self._bindingsOf(broker) is not None

    async def login(self, broker: pb.Broker, keycard: object, mind: object) -> Any:
        connection = self._connectionFor(broker)
        if not isinstance(keycard, Keycard):
            self._note(broker, "refused a login with no keycard from {peer}")
            raise KeycardRefused()
        if keycard.id is None and not self._takes(broker, keycard):
            # The client learns the kinds from this answer, not from a
            # round trip of its own (see KeycardClientFactory.login).
            return (None, self.kindsFor(broker))
        if connection.core.keycardCount() >= self.maxKeycardsPerConnection:
            raise KeycardDenied("too many keycards on this connection")
        if keycard.carriesSecret() and not ISSLTransport.providedBy(broker.transport):
            self._note(broker, "refused a keycard with a secret over TCP from {peer}")
            raise InsecureTransport(f"{type(keycard).__name__} needs TLS")
        inputs = connection.inputs
        if not inputs.beginLogin():
            raise KeycardRefused()
        keycard.address = peerAddress(broker)
        keycard.requesterName = self.requesterName
        keycard.channelBindings = self._bindingsOf(broker)
        try:
            result: Keycard = await self.bouncer.authenticate(keycard, broker)
        except BaseException as e:
            inputs.loginEnded()
            if isinstance(e, KeycardRefused) and getattr(
                type(keycard), "dropOnRefusal", False
            ):
                self._dropSoon(broker)
            raise
        if result.state is not KeycardState.AUTHENTICATED:
            inputs.loginEnded()
            return (result, None)
        keycardId = result.id
        assert keycardId is not None and result.avatarId is not None
        if not inputs.keycardIssued(keycardId):
            raise KeycardRefused()
        if self._renewal is not None:
            self._renewal.issued(keycardId, result.duration)
        try:
            # twisted.cred types avatar ids as bytes; ours are text.
            avatarId: Any = result.avatarId
            login: Any = await maybeDeferred(
                self.portal.realm.requestAvatar, avatarId, mind, pb.IPerspective
            )
            _, avatar, logout = login
        except Exception as e:
            # The realm's refusal (LoginFailed, pb.Error, Buildbot's
            # "duplicate worker"...), for the client to read as it is.
            self.log.info(
                "realm refused avatar {avatarId}: {error}",
                avatarId=printable(result.avatarId),
                error=printable(f"{type(e).__name__}: {e}"),
            )
            inputs.avatarFailed(keycardId)
            self._released()
            raise RealmRefusal(e) from None
        if not inputs.avatarReady(keycardId, logout):
            self._released()
            raise KeycardRefused()
        if not IJellyable.providedBy(avatar):
            avatar = pb.AsReferenceable(avatar, "perspective")
        return (result, avatar)

    def _dropSoon(self, broker: pb.Broker) -> None:
        """
        Drop the client once the refusal has been written.
        """
        clock = self._reactor()
        transport = broker.transport
        if transport is not None:
            self._note(broker, "dropping {peer} after a refusal")
            clock.callLater(0, transport.loseConnection)

    def _note(self, broker: pb.Broker, format: str) -> None:
        """
        Log a line about a client's refused request; through a
        L{KeycardBroker}, rationed per client address.
        """
        if isinstance(broker, KeycardBroker):
            broker.note(format)
        else:
            self.log.info(format, peer=printable(peerAddress(broker)))

    def expireKeycardIds(self, keycardIds: Sequence[str]) -> None:
        """
        Drop the clients that hold these keycards.
        """
        for keycardId in keycardIds:
            connection = self._holders.get(keycardId)
            if connection is not None:
                connection.expire(keycardId)
        self._released()


class _KeycardLogin(pb.Referenceable):
    """
    The root object one client sees.
    """

    def __init__(self, root: KeycardRoot, broker: pb.Broker) -> None:
        self._root = root
        self._broker = broker

    def remoteMessageReceived(
        self, broker: pb.Broker, message: str, args: object, kw: object
    ) -> object:
        """
        Call C{remote_keycardClasses} or C{remote_login} for the peer, after
        checking the name and the arguments, so that a stranger's bad call
        is a L{MalformedMessage} with a fixed message: no traceback in the
        log, no line that repeats the arguments.
        """
        if message not in _LOGIN_METHODS:
            raise MalformedMessage(REFUSED) from NoSuchMethod(repr(message[:40]))
        args = broker.unserialize(args)
        kw = broker.unserialize(kw)
        if isStockLogin(message, args, kw):
            if not self._root.stockLogin:
                raise KeycardRefused(KEYCARDS_ONLY)
            stock = StockLogin(self._root.portal, broker)
            method = getattr(stock, "remote_" + message)
            assert isinstance(args, tuple | list)
            return broker.serialize(method(*args), self.perspective)
        arity = _KEYCARD_METHODS.get(message)
        if arity is None:
            raise MalformedMessage(REFUSED) from NoSuchMethod(repr(message[:40]))
        method = getattr(self, "remote_" + message)
        try:
            if not isinstance(args, tuple | list) or not isinstance(kw, dict):
                raise TypeError("arguments that are not a tuple and a dictionary")
            if kw or len(args) != arity:
                # Not the plain positional call: let the signature judge.
                signature(method).bind(*args, **kw)
        except TypeError as e:
            raise MalformedMessage(REFUSED) from e
        return broker.serialize(method(*args, **kw), self.perspective)

    def remote_keycardClasses(self) -> list[str]:
        """
        The type tags of the keycards the bouncer takes (see
        L{KeycardRoot.kindsFor}), for clients that ask before they log in.
        """
        return self._root.kindsFor(self._broker)

    def remote_login(self, keycard: object, mind: object) -> Deferred[Any]:
        """
        One message of a keycard exchange.

        @return: a L{Deferred} firing with C{(keycard, None)} while the
            exchange goes on, C{(keycard, perspective)} on success, and
            C{(None, kinds)} for a first message the bouncer cannot take
            (a kind it does not take, or channel binding this connection
            cannot give), C{kinds} as L{KeycardRoot.kindsFor} lists them;
            it fails with L{KeycardRefused} or L{KeycardDenied}, or with
            what the realm raised, sent as it is.
        """
        d = Deferred.fromCoroutine(self._root.login(self._broker, keycard, mind))
        return d.addErrback(_passRealmRefusal)


class RealmRefusal(Exception):
    """
    Carries what the realm raised out of L{KeycardRoot.login}, logged once
    already, to be sent to the client as it is.

    @ivar error: the realm's error.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


def _passRealmRefusal(failure: Failure) -> Failure:
    value = failure.value
    if isinstance(value, RealmRefusal):
        return passedOn(value.error)
    return failure


#: The methods of a keycard login (C{remote_} + name), and how many
#: arguments each takes.
_KEYCARD_METHODS = {"keycardClasses": 0, "login": 2}

#: The methods a client may call on the root object.
_LOGIN_METHODS = frozenset(_KEYCARD_METHODS) | STOCK_METHODS


class KeycardServerFactory(pb.PBServerFactory):
    """
    A L{pb.PBServerFactory} whose brokers bound what a stranger may cost
    the server (see L{ConnectionLimits}: a login deadline, caps on
    connections not logged in, a budget for each message) and answer
    malformed messages without a logged traceback.

    A connection counts as logged in once L{KeycardRoot} gives it a
    keycard; a root of another kind calls L{KeycardBroker.loggedIn} on the
    connection's broker when its client has logged in, or the connection
    stays a stranger's, dropped at the login deadline.
    """

    protocol = KeycardBroker

    def __init__(
        self,
        root: IPBRoot,
        maxMessage: int | None = None,
        *,
        limits: ConnectionLimits = ConnectionLimits(),  # noqa: B008 - frozen
        clock: IReactorTime | None = None,
    ) -> None:
        """
        @param maxMessage: bytes of one message after login, at most: a
            shorthand for the C{bytes} of C{limits.budget}; it also lowers
            the login budget's if smaller.
        @param limits: the limits on each connection.
        @param clock: times the deadlines; the global reactor if C{None}.
        """
        super().__init__(root)
        if maxMessage is not None:
            limits = attrs.evolve(
                limits,
                budget=attrs.evolve(limits.budget, bytes=maxMessage),
                loginBudget=attrs.evolve(
                    limits.loginBudget,
                    bytes=min(maxMessage, limits.loginBudget.bytes),
                ),
            )
        self.maxMessage = maxMessage
        self.limits = limits
        if clock is None:
            from twisted.internet import reactor  # the outermost default

            clock = reactor
        self.guard = ConnectionGuard(limits, clock)

    def buildProtocol(self, addr: object) -> KeycardBroker | None:
        """
        A broker for a new connection, or C{None} to close it at once when
        the limits on strangers refuse it.
        """
        group = self.guard.admit(addr)
        if group is None:
            return None
        broker: KeycardBroker = super().buildProtocol(addr)
        self.guard.track(broker, group)
        return broker
