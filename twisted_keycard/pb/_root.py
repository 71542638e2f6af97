"""
The server side of a PB login with keycards: a PB root that forwards
keycards to a bouncer and logs clients in through a twisted.cred realm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime, ISSLTransport
from twisted.logger import Logger
from twisted.spread import pb
from twisted.spread.flavors import IPBRoot
from twisted.spread.interfaces import IJellyable
from zope.interface import implementer

from twisted_keycard.bouncer._interfaces import IBouncer, IRequester
from twisted_keycard.error import InsecureTransport, KeycardDenied, KeycardRefused
from twisted_keycard.keycard._address import normalizeAddress
from twisted_keycard.keycard._keycard import ADDRESS_LENGTH, Keycard, KeycardState
from twisted_keycard.pb._broker import KeycardBroker
from twisted_keycard.pb._connection import ClientConnection, ConnectionInputs

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

    It sets each keycard's C{address} from the connection's peer and its
    C{requesterName}, forwards it to the bouncer, and on success asks the
    portal's realm for the avatar.  It drops a client whose keycard the
    bouncer expires, and removes the keycard when the client goes, even
    when the avatar arrives after that (see L{ClientConnection}).
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
    ) -> None:
        """
        @param bouncer: checks the keycards; it is told to call this root
            back when it expires keycards issued through it.
        @param clock: schedules dropping a client after its refusal is sent
            (for keycard kinds that ask for it); the global reactor if
            C{None}.
        @param portal: the application's portal; only its realm is used,
            since the bouncer does the checking.
        @param requesterName: this requester's name, set in every keycard.
        """
        self.bouncer = bouncer
        self.portal = portal
        self.requesterName = requesterName
        self.maxKeycardsPerConnection = maxKeycardsPerConnection
        self._clock = clock
        #: Keycard ids issued through this root, to the connections holding them.
        self._holders: dict[str, ConnectionInputs] = {}
        self._connections: dict[pb.Broker, ClientConnection] = {}
        bouncer.registerRequester(requesterName, self)

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

    def _clientGone(self, broker: pb.Broker) -> None:
        connection = self._connections.pop(broker, None)
        if connection is not None:
            connection.inputs.connectionLost()

    async def login(self, broker: pb.Broker, keycard: object, mind: object) -> Any:
        connection = self._connectionFor(broker)
        if not isinstance(keycard, Keycard):
            self.log.info(
                "refused a login with no keycard from {peer}", peer=peerAddress(broker)
            )
            raise KeycardRefused()
        if connection.core.keycardCount() >= self.maxKeycardsPerConnection:
            raise KeycardDenied("too many keycards on this connection")
        if keycard.carriesSecret() and not ISSLTransport.providedBy(broker.transport):
            self.log.info("refused a keycard with a secret over plain TCP")
            raise InsecureTransport(f"{type(keycard).__name__} needs TLS")
        inputs = connection.inputs
        if not inputs.beginLogin():
            raise KeycardRefused()
        keycard.address = peerAddress(broker)
        keycard.requesterName = self.requesterName
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
        try:
            # twisted.cred types avatar ids as bytes; ours are text.
            avatarId: Any = result.avatarId
            login: Any = await maybeDeferred(
                self.portal.realm.requestAvatar, avatarId, mind, pb.IPerspective
            )
            _, avatar, logout = login
        except Exception:
            self.log.failure(
                "realm refused avatar {avatarId}", avatarId=result.avatarId
            )
            inputs.avatarFailed(keycardId)
            raise KeycardRefused() from None
        if not inputs.avatarReady(keycardId, logout):
            raise KeycardRefused()
        if not IJellyable.providedBy(avatar):
            avatar = pb.AsReferenceable(avatar, "perspective")
        return (result, avatar)

    def _dropSoon(self, broker: pb.Broker) -> None:
        """
        Drop the client once the refusal has been written.
        """
        clock: Any = self._clock
        if clock is None:
            from twisted.internet import reactor as clock  # the outermost default
        transport = broker.transport
        if transport is not None:
            self.log.info("dropping {peer} after a refusal", peer=peerAddress(broker))
            clock.callLater(0, transport.loseConnection)

    def expireKeycardIds(self, keycardIds: Sequence[str]) -> None:
        """
        Drop the clients that hold these keycards.
        """
        for keycardId in keycardIds:
            connection = self._holders.get(keycardId)
            if connection is not None:
                connection.expire(keycardId)


class _KeycardLogin(pb.Referenceable):
    """
    The root object one client sees.
    """

    def __init__(self, root: KeycardRoot, broker: pb.Broker) -> None:
        self._root = root
        self._broker = broker

    def remote_keycardClasses(self) -> list[str]:
        """
        The type tags of the keycards the bouncer takes, in its order.
        """
        return [cls.keycardType for cls in self._root.bouncer.keycardClasses]

    def remote_login(self, keycard: object, mind: object) -> Deferred[Any]:
        """
        One message of a keycard exchange.

        @return: a L{Deferred} firing with C{(keycard, None)} while the
            exchange goes on, C{(keycard, perspective)} on success; it fails
            with L{KeycardRefused} or L{KeycardDenied}.
        """
        return Deferred.fromCoroutine(self._root.login(self._broker, keycard, mind))


class KeycardServerFactory(pb.PBServerFactory):
    """
    A L{pb.PBServerFactory} whose brokers bound the size of a peer's
    messages and answer malformed ones without a logged traceback.
    """

    protocol = KeycardBroker

    def __init__(self, root: IPBRoot, maxMessage: int | None = None) -> None:
        super().__init__(root)
        self.maxMessage = maxMessage

    def buildProtocol(self, addr: object) -> KeycardBroker:
        broker: KeycardBroker = super().buildProtocol(addr)
        if self.maxMessage is not None:
            broker.maxMessage = self.maxMessage
        return broker
