"""
The server side of a PB login with keycards: a PB root that forwards
keycards to a bouncer and logs clients in through a twisted.cred realm.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime, ISSLTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.spread import pb
from twisted.spread.flavors import IPBRoot
from twisted.spread.interfaces import IJellyable
from zope.interface import implementer

from twisted_keycard.bouncer._interfaces import IBouncer, IRequester
from twisted_keycard.error import InsecureTransport, KeycardDenied, KeycardRefused
from twisted_keycard.keycard._keycard import ADDRESS_LENGTH, Keycard, KeycardState
from twisted_keycard.pb._broker import KeycardBroker

#: Keycards one connection may hold at once, by default.
MAX_KEYCARDS_PER_CONNECTION = 16


def peerAddress(broker: pb.Broker) -> str | None:
    """
    The client's address as this side of the connection sees it: the host
    of an IP peer, else a bounded string form of the peer address.
    """
    transport = broker.transport
    if transport is None:
        return None
    peer = transport.getPeer()
    host = getattr(peer, "host", None)
    if isinstance(host, str):
        return host[:ADDRESS_LENGTH]
    return str(peer)[:ADDRESS_LENGTH]


@implementer(IPBRoot, IRequester)
class KeycardRoot:
    """
    A PB root object (for L{KeycardServerFactory} or L{pb.PBServerFactory})
    that logs clients in with keycards.

    It sets each keycard's C{address} from the connection's peer and its
    C{requesterName}, forwards it to the bouncer, and on success asks the
    portal's realm for the avatar.  It drops a client whose keycard the
    bouncer expires, and removes the keycard when the client goes.
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
        self._holders: dict[str, pb.Broker] = {}
        self._held: dict[pb.Broker, dict[str, Callable[[], object]]] = {}
        bouncer.registerRequester(requesterName, self)

    def rootObject(self, broker: pb.Broker) -> _KeycardLogin:
        return _KeycardLogin(self, broker)

    def keycardIds(self) -> list[str]:
        """
        The ids of the keycards held by connected clients.
        """
        return list(self._holders)

    async def login(self, broker: pb.Broker, keycard: object, mind: object) -> Any:
        if not isinstance(keycard, Keycard):
            self.log.info(
                "refused a login with no keycard from {peer}", peer=peerAddress(broker)
            )
            raise KeycardRefused()
        held = self._held.get(broker, {})
        if len(held) >= self.maxKeycardsPerConnection:
            raise KeycardDenied("too many keycards on this connection")
        if keycard.carriesSecret() and not ISSLTransport.providedBy(broker.transport):
            self.log.info("refused a keycard with a secret over plain TCP")
            raise InsecureTransport(f"{type(keycard).__name__} needs TLS")
        keycard.address = peerAddress(broker)
        keycard.requesterName = self.requesterName
        try:
            result: Keycard = await self.bouncer.authenticate(keycard)
        except KeycardRefused:
            if getattr(type(keycard), "dropOnRefusal", False):
                self._dropSoon(broker)
            raise
        if result.state is not KeycardState.AUTHENTICATED:
            return (result, None)
        keycardId = result.id
        assert keycardId is not None and result.avatarId is not None
        if broker.disconnected:
            await self.bouncer.removeKeycardId(keycardId)
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
            await self.bouncer.removeKeycardId(keycardId)
            raise KeycardRefused() from None
        self._hold(broker, keycardId, logout)
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

    def _hold(
        self, broker: pb.Broker, keycardId: str, logout: Callable[[], object]
    ) -> None:
        held = self._held.get(broker)
        if held is None:
            held = self._held[broker] = {}
            broker.notifyOnDisconnect(lambda: self._clientGone(broker))
        held[keycardId] = logout
        self._holders[keycardId] = broker

    def _clientGone(self, broker: pb.Broker) -> None:
        for keycardId, logout in self._held.pop(broker, {}).items():
            self._holders.pop(keycardId, None)
            try:
                logout()
            except Exception:
                self.log.failure(
                    "logout of keycard {keycardId} failed", keycardId=keycardId
                )
            self.bouncer.removeKeycardId(keycardId).addErrback(
                self._removeFailed, keycardId
            )

    def _removeFailed(self, failure: Failure, keycardId: str) -> None:
        # The bouncer expires the keycard by itself in the end: a warning.
        self.log.warn(
            "could not tell the bouncer that keycard {keycardId} was removed: {error}",
            keycardId=keycardId,
            error=failure.getErrorMessage(),
        )

    def expireKeycardIds(self, keycardIds: Sequence[str]) -> None:
        """
        Drop the clients that hold these keycards.
        """
        for keycardId in keycardIds:
            broker = self._holders.get(keycardId)
            if broker is None or broker.transport is None:
                continue
            self.log.info(
                "dropping {peer}: keycard {keycardId} expired",
                peer=peerAddress(broker),
                keycardId=keycardId,
            )
            broker.transport.loseConnection()


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
