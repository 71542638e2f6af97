"""
Fakes for testing applications that use keycards, with no sockets and no
real time.

L{KeycardTestServer} wires a real L{Bouncer}, L{KeycardRoot} and
L{KeycardClientFactory} together in memory (L{twisted.test.iosim}), with a
L{MemoryStore} and a L{Clock}, so a trial test drives a whole login
synchronously::

    server = KeycardTestServer.build([SCRAMVerifiers(...)], MyRealm())
    connection = server.connect()
    d = connection.login([SCRAMAnswerer("alice", "secret")])
    perspective = self.successResultOf(d)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.portal import IRealm, Portal
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.spread import pb
from twisted.spread.flavors import IPBRoot
from twisted.test.iosim import FakeTransport, IOPump, connect

from twisted_keycard.bouncer import Bouncer
from twisted_keycard.keycard import IAnswerer
from twisted_keycard.pb import (
    KeycardClientFactory,
    KeycardLogin,
    KeycardRoot,
    KeycardServerFactory,
)
from twisted_keycard.store import IKeycardStore, MemoryStore

__all__ = ["KeycardTestConnection", "KeycardTestServer", "connectToRoot"]


@attrs.define
class KeycardTestConnection:
    """
    One in-memory connection between a client and a L{KeycardTestServer}.

    @ivar factory: the client's L{KeycardClientFactory}.
    @ivar pump: moves bytes between the two sides; L{login} and L{flush}
        pump it for you.
    @ivar serverBroker: the server side's broker.
    @ivar clientBroker: the client side's broker.
    """

    factory: KeycardClientFactory
    pump: IOPump
    serverBroker: pb.Broker
    clientBroker: pb.Broker

    def flush(self) -> None:
        """
        Deliver everything either side has written, until both are quiet.
        """
        self.pump.flush()

    def login(
        self, answerers: Sequence[IAnswerer], mind: object = None, **kwargs: object
    ) -> Deferred[pb.RemoteReference]:
        """
        Log in with L{KeycardClientFactory.login} and pump until it is done.
        """
        d = self.factory.login(answerers, mind, **kwargs)  # type: ignore[arg-type]
        self.flush()
        return d

    def loginWithKeycard(
        self, answerers: Sequence[IAnswerer], mind: object = None, **kwargs: object
    ) -> Deferred[KeycardLogin]:
        """
        Log in with L{KeycardClientFactory.loginWithKeycard} and pump until
        it is done.
        """
        d = self.factory.loginWithKeycard(answerers, mind, **kwargs)  # type: ignore[arg-type]
        self.flush()
        return d

    @property
    def connected(self) -> bool:
        """
        Whether neither side has dropped the connection.
        """
        return not (self.serverBroker.disconnected or self.clientBroker.disconnected)

    def disconnect(self) -> None:
        """
        Drop the connection from the client's side and deliver the news.
        """
        self.factory.disconnect()
        self.flush()


@attrs.define
class KeycardTestServer:
    """
    A bouncer and a PB requester, to be reached by in-memory clients.

    @ivar bouncer: the L{Bouncer}.
    @ivar root: the L{KeycardRoot} clients log in through.
    @ivar clock: the L{Clock} the bouncer reads; advance it to expire
        keycards.
    """

    bouncer: Bouncer
    root: KeycardRoot
    clock: Clock

    @classmethod
    def build(
        cls,
        checkers: Iterable[ICredentialsChecker],
        realm: IRealm,
        *,
        store: IKeycardStore | None = None,
        clock: Clock | None = None,
        requesterName: str = "test-requester",
        **bouncerOptions: object,
    ) -> KeycardTestServer:
        """
        Build a server around a new L{Bouncer}.

        @param bouncerOptions: further keyword arguments for L{Bouncer}.
        """
        clock = clock if clock is not None else Clock()
        bouncer = Bouncer(
            checkers,
            store if store is not None else MemoryStore(),
            clock=clock,
            **bouncerOptions,  # type: ignore[arg-type]
        )
        root = KeycardRoot(bouncer, Portal(realm), requesterName, clock=clock)
        return cls(bouncer, root, clock)

    def connect(
        self, clientHost: str = "127.0.0.1", port: int = 40000
    ) -> KeycardTestConnection:
        """
        Connect a new client to this server, in memory.

        @param clientHost: the address the server sees the client at.
        """
        return connectToRoot(self.root, self.clock, clientHost, port)


def connectToRoot(
    root: IPBRoot,
    clock: Clock | None = None,
    clientHost: str = "127.0.0.1",
    port: int = 40000,
) -> KeycardTestConnection:
    """
    Connect a new L{KeycardClientFactory} to any PB root, in memory.

    @param clock: advanced by 0 at each pump, to run C{callLater(0, ...)};
        it also times the server's login deadline (see L{ConnectionLimits}).
    @param clientHost: the address the server sees the client at.
    """
    serverAddress = IPv4Address("TCP", "127.0.0.1", 8800)
    clientAddress = IPv4Address("TCP", clientHost, port)
    clock = clock if clock is not None else Clock()
    serverBroker = KeycardServerFactory(root, clock=clock).buildProtocol(clientAddress)
    assert serverBroker is not None, "a first connection is always admitted"
    factory = KeycardClientFactory(clock)
    clientBroker = factory.buildProtocol(serverAddress)
    pump = connect(
        serverBroker,
        FakeTransport(serverBroker, True, serverAddress, clientAddress),
        clientBroker,
        FakeTransport(clientBroker, False, clientAddress, serverAddress),
        clock=clock,
    )
    return KeycardTestConnection(factory, pump, serverBroker, clientBroker)
