"""
The server side of a PB login with keycards: a PB root that forwards
keycards to a bouncer and logs clients in through a twisted.cred realm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twisted.cred.portal import Portal
from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IReactorTime, ISSLTransport
from twisted.logger import Logger
from twisted.spread import pb
from twisted.spread.flavors import IPBRoot
from twisted.spread.interfaces import IJellyable
from zope.interface import implementer

from twisted_keycard._printable import printable
from twisted_keycard.bouncer._interfaces import IBouncer, IRequester
from twisted_keycard.error import InsecureTransport, KeycardDenied, KeycardRefused
from twisted_keycard.keycard._keycard import Keycard, KeycardState
from twisted_keycard.keycard._tls import channelBindings
from twisted_keycard.pb._broker import KeycardBroker
from twisted_keycard.pb._connection import ClientConnection, ConnectionInputs
from twisted_keycard.pb._peer import peerAddress
from twisted_keycard.pb._portal import rootFromPortal
from twisted_keycard.pb._renewal import Renewal, checkRenewEvery
from twisted_keycard.pb._rootobject import RealmRefusal, _KeycardLogin
from twisted_keycard.store._interfaces import IKeycardStore

#: Keycards one connection may hold at once, by default.
MAX_KEYCARDS_PER_CONNECTION = 16


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
