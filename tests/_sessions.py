"""
A bouncer, a service and clients for brokered session tests, all in memory
on one L{MemoryReactorClock}: the bouncer's PB face on one port, the
service's on another, connections completed and pumped by L{settle}.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.spread import pb
from twisted.test.iosim import ConnectionCompleter, IOPump

from twisted_keycard import Bouncer, KeycardClientFactory, KeycardRoot, MemoryStore
from twisted_keycard.pb import KeycardLogin, KeycardServerFactory
from twisted_keycard.remote import BouncerRealm
from twisted_keycard.sessions import (
    ITicketRedeemer,
    RemoteTicketRedeemer,
    Session,
    SessionRoot,
    SessionServerFactory,
    TicketGranter,
    TicketGrantingRealm,
    connectSession,
)

from ._passphrase import PassphraseAnswerer, PassphraseChecker
from ._realm import AvatarRealm, Perspective

BOUNCER_PORT = 8800
SECRETS = {"alice": "wonderland", "bob": "builder", "chat": "chat-secret"}
SECRETS["files"] = "files-secret"
SERVICES = {"chat", "files"}
REQUESTER = "keycard-bouncer"
IDLE = 60.0


class EchoPerspective(Perspective):
    def perspective_echo(self, value: object) -> object:
        return value


class EchoRealm(AvatarRealm):
    """
    An L{AvatarRealm} whose avatars also echo what they are sent.
    """

    def requestAvatar(
        self, avatarId: Any, mind: object, *interfaces: Any
    ) -> tuple[Any, Perspective, Any]:
        avatar = EchoPerspective(avatarId, mind)
        self.avatars.append(avatar)
        return pb.IPerspective, avatar, lambda: self.loggedOut.append(avatarId)


class SessionWorld:
    """
    The three parties of a brokered session, in memory.

    @ivar remote: whether services reach the bouncer over PB
        (L{RemoteTicketRedeemer}) rather than in its process.
    """

    def __init__(self, remote: bool) -> None:
        self.remote = remote
        self.reactor = MemoryReactorClock()
        self.pumps: list[IOPump] = []
        self.bouncer = Bouncer(
            [PassphraseChecker(SECRETS)],
            MemoryStore(),
            clock=self.reactor,
            duration=3600,
        )
        self.granter = TicketGranter(self.bouncer, self.reactor)
        self.realm = TicketGrantingRealm(
            BouncerRealm(self.bouncer, set(), self.reactor),
            self.granter,
            SERVICES,
            requesterName=REQUESTER,
        )
        self.bouncerRoot = KeycardRoot(
            self.bouncer, Portal(self.realm), REQUESTER, clock=self.reactor
        )
        self.reactor.listenTCP(
            BOUNCER_PORT, KeycardServerFactory(self.bouncerRoot, clock=self.reactor)
        )
        self.services: dict[str, tuple[SessionRoot, AvatarRealm, int]] = {}
        self.links: dict[str, RemoteTicketRedeemer] = {}

    def settle(self) -> None:
        """
        Complete the connections asked for and pump every one, until
        nothing moves.
        """
        completer = ConnectionCompleter(self.reactor)
        for _ in range(500):
            moved = False
            while (pump := completer.succeedOnce()) is not None:
                self.pumps.append(pump)
                moved = True
            for p in self.pumps:
                moved = p.pump() or moved
            if not moved:
                return
        raise AssertionError("still pumping")

    def redeemer(self, name: str) -> ITicketRedeemer:
        """
        The bouncer as service C{name} reaches it.
        """
        if not self.remote:
            return self.granter.register(name)
        link = RemoteTicketRedeemer(
            TCP4ClientEndpoint(self.reactor, "127.0.0.1", BOUNCER_PORT),
            [PassphraseAnswerer(name, SECRETS[name])],
            clock=self.reactor,
            retryPolicy=lambda attempt: 1.0,
        )
        link.startService()
        self.links[name] = link
        return link

    def startService(
        self,
        name: str,
        port: int,
        redeemer: ITicketRedeemer | None = None,
        **options: int,
    ) -> SessionRoot:
        """
        Service C{name} listening on C{port}, its root made with
        C{options} (C{maxSessions}, C{maxSessionsPerClient}).
        """
        realm = EchoRealm()
        if redeemer is None:
            redeemer = self.redeemer(name)
        root = SessionRoot(
            redeemer, realm, clock=self.reactor, idleTimeout=IDLE, **options
        )
        self.reactor.listenTCP(port, SessionServerFactory(root, clock=self.reactor))
        self.services[name] = (root, realm, port)
        self.settle()
        return root

    def login(self, name: str = "alice") -> KeycardLogin:
        """
        A client of the bouncer, logged in as C{name}.
        """
        factory = KeycardClientFactory()
        TCP4ClientEndpoint(self.reactor, "127.0.0.1", BOUNCER_PORT).connect(factory)
        d = factory.loginWithKeycard([PassphraseAnswerer(name, SECRETS[name])])
        self.settle()
        login: KeycardLogin = _result(d)
        return login

    def connect(
        self, login: KeycardLogin, serviceName: str = "chat", port: int | None = None
    ) -> Deferred[Session]:
        """
        Start a session of C{login}'s client with the service at C{port}
        (by default, C{serviceName}'s), and settle.
        """
        if port is None:
            port = self.services[serviceName][2]
        endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", port)
        d = connectSession(login, endpoint, serviceName)
        self.settle()
        return d

    def pumpFor(self, broker: pb.Broker) -> IOPump:
        """
        The pump of the connection C{broker} is an end of.
        """
        for pump in self.pumps:
            client = getattr(pump.client, "_wrappedProtocol", pump.client)
            if broker in (client, pump.server):
                return pump
        raise KeyError(broker)


def _result(d: Deferred[Any]) -> Any:
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "not fired"
    result = results[0]
    if hasattr(result, "raiseException"):
        result.raiseException()
    return result
