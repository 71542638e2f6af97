"""
Tests for SCRAM-SHA-256-PLUS, SCRAM bound to the TLS channel
(L{twisted_keycard.scram._messages}): the GS2 header each side chooses and
accepts, exchanges with fixed binding data, and logins over real TLS in
memory, through a relay, with the PLUS listing hidden, and through a remote
bouncer.
"""

from __future__ import annotations

from base64 import b64encode
from typing import Any

from twisted.cred.portal import Portal
from twisted.internet.defer import succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.test.iosim import ConnectionCompleter, IOPump
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_keycard import Bouncer, KeycardRoot, KeycardServerFactory, MemoryStore
from twisted_keycard.error import KeycardRefused, ProtocolError
from twisted_keycard.interfaces import IChannelBindingAnswerer
from twisted_keycard.keycard import (
    TLS_EXPORTER,
    TLS_SERVER_END_POINT,
    ClientChannel,
    channelBindings,
)
from twisted_keycard.pb import _client as _login
from twisted_keycard.remote import BouncerRealm, RemoteBouncer
from twisted_keycard.scram import (
    SCRAMAnswerer,
    SCRAMExchange,
    SCRAMVerifiers,
    Verifier,
)
from twisted_keycard.scram._messages import (
    bindingAttribute,
    checkOffer,
    clientHeader,
    serverBinding,
)
from twisted_keycard.testing import KeycardTestConnection, KeycardTestServer

from ._passphrase import PassphraseAnswerer, PassphraseChecker
from ._realm import AvatarRealm
from ._tls import Identity, ManInTheMiddle, connectTLS, unverified

EXPORTER = b"\x11" * 32
END_POINT = b"\x22" * 32
BOTH = {TLS_EXPORTER: EXPORTER, TLS_SERVER_END_POINT: END_POINT}
PLUS = "scram-sha-256-plus"


class GS2HeaderTests(SynchronousTestCase):
    """
    What each side makes of the GS2 header, RFC 5802 section 6.
    """

    def test_bindingAttribute(self) -> None:
        self.assertEqual(bindingAttribute("n,,"), "biws")
        self.assertEqual(bindingAttribute("y,,"), "eSws")
        self.assertEqual(
            bindingAttribute("p=tls-exporter,,", EXPORTER),
            b64encode(b"p=tls-exporter,," + EXPORTER).decode(),
        )

    def test_clientHeader(self) -> None:
        """
        A client binds when it has data and the server did not say it
        cannot (or was not asked), sends C{y} when the server said it
        cannot, C{n} without data; it prefers C{tls-exporter}.
        """
        types = (TLS_EXPORTER, TLS_SERVER_END_POINT)
        endOnly = {TLS_SERVER_END_POINT: END_POINT}
        exporter = ("p=tls-exporter,,", EXPORTER)
        endPoint = ("p=tls-server-end-point,,", END_POINT)
        unbound = ("n,,", b"")
        for channel, mode, chosen, expected in [
            (None, "prefer", types, unbound),
            (ClientChannel({}, True), "prefer", types, unbound),
            (ClientChannel(BOTH, True), "prefer", types, exporter),
            (ClientChannel(BOTH, None), "require", types, exporter),
            (ClientChannel(endOnly, True), "prefer", types, endPoint),
            (ClientChannel(BOTH, True), "prefer", (TLS_SERVER_END_POINT,), endPoint),
            (ClientChannel(BOTH, False), "prefer", types, ("y,,", b"")),
            (ClientChannel(endOnly, False), "prefer", (TLS_EXPORTER,), unbound),
            (ClientChannel(BOTH, True), "disable", types, unbound),
        ]:
            self.assertEqual(clientHeader(channel, mode, chosen), expected)
        for channel in [None, ClientChannel({}, True), ClientChannel(BOTH, False)]:
            self.assertRaises(ProtocolError, clientHeader, channel, "require", types)

    def test_serverChecks(self) -> None:
        """
        The server refuses a type its connection cannot give, and C{y}
        when it can bind (a downgrade); it takes C{n} always.
        """
        for header, bindings in [
            ("n,,", None),
            ("n,,", BOTH),
            ("y,,", None),
            ("p=tls-exporter,,", BOTH),
            ("p=tls-server-end-point,,", {TLS_SERVER_END_POINT: END_POINT}),
        ]:
            checkOffer(header, bindings)
        for header, bindings in [
            ("y,,", BOTH),
            ("p=tls-exporter,,", None),
            ("p=tls-exporter,,", {TLS_SERVER_END_POINT: END_POINT}),
        ]:
            self.assertRaises(ProtocolError, checkOffer, header, bindings)
        self.assertEqual(serverBinding("n,,", BOTH), "biws")
        self.assertEqual(
            serverBinding("p=tls-server-end-point,,", BOTH),
            bindingAttribute("p=tls-server-end-point,,", END_POINT),
        )
        self.assertRaises(ProtocolError, serverBinding, "p=tls-exporter,,", None)


class FixedDataTests(SynchronousTestCase):
    """
    Our client against our server with fixed binding data, no TLS.
    """

    def setUp(self) -> None:
        self.checker = SCRAMVerifiers({"alice": Verifier.fromPassword("secret")})

    def exchange(
        self,
        channel: ClientChannel,
        first: dict[str, bytes] | None,
        final: dict[str, bytes] | None,
    ) -> Any:
        """
        Run one exchange, the requester giving C{first} and C{final} as the
        binding data of the connections its two messages came on.

        @return: the checker's answer.
        """
        answerer = SCRAMAnswerer("alice", "secret")
        keycard = answerer.startBound(channel)
        keycard.channelBindings = first
        exchange = self.successResultOf(self.checker.prime(keycard))
        assert isinstance(exchange, SCRAMExchange)
        exchange.challenge(keycard)
        answerer.answer(keycard)
        keycard.channelBindings = final
        exchange.answer(keycard)
        d = self.checker.requestAvatarId(exchange)
        self.assertEqual(self.successResultOf(d), "alice")
        exchange.conclude(keycard)
        answerer.finish(keycard)
        return keycard

    def test_bound(self) -> None:
        """
        The client-final message's C{c=} carries the header and the data,
        and the server takes it when its own data is the same.
        """
        keycard = self.exchange(ClientChannel(BOTH, True), BOTH, BOTH)
        self.assertTrue(keycard.clientFirst.startswith("p=tls-exporter,,n=alice,"))
        expected = b64encode(b"p=tls-exporter,," + EXPORTER).decode()
        self.assertTrue(keycard.clientFinal.startswith(f"c={expected},r="))

    def test_otherChannel(self) -> None:
        """
        An answer bound to other data than the server's connection (a relay
        in between), or arriving where there is no binding, is refused.
        """
        other = {TLS_EXPORTER: b"\x33" * 32, TLS_SERVER_END_POINT: END_POINT}
        for final in [other, None]:
            with self.assertRaises(ProtocolError):
                self.exchange(ClientChannel(BOTH, True), BOTH, final)

    def test_downgrade(self) -> None:
        """
        A client told the server cannot bind sends C{y}; a server that can
        bind refuses it at once.
        """
        answerer = SCRAMAnswerer("alice", "secret")
        keycard = answerer.startBound(ClientChannel(BOTH, False))
        self.assertEqual(str(keycard.clientFirst)[:3], "y,,")
        keycard.channelBindings = BOTH
        self.failureResultOf(self.checker.prime(keycard), ProtocolError)
        keycard.channelBindings = None
        self.successResultOf(self.checker.prime(keycard))

    def test_requireRefusesUnbound(self) -> None:
        answerer = SCRAMAnswerer("alice", "secret", channelBinding="require")
        self.assertTrue(verifyObject(IChannelBindingAnswerer, answerer))
        self.assertRaises(ProtocolError, answerer.start)
        self.assertRaises(
            ProtocolError, answerer.startBound, ClientChannel(BOTH, False)
        )

    def test_badOptions(self) -> None:
        self.assertRaises(ValueError, SCRAMAnswerer, "a", "b", channelBinding="maybe")
        self.assertRaises(
            ValueError, SCRAMAnswerer, "a", "b", bindingTypes=["tls-unique"]
        )


class TLSLoginTests(SynchronousTestCase):
    """
    SCRAM-SHA-256-PLUS over real TLS, in memory.
    """

    def setUp(self) -> None:
        self.identity = Identity.make()
        self.server = KeycardTestServer.build(
            [SCRAMVerifiers({"alice": Verifier.fromPassword("secret")})],
            AvatarRealm(),
        )
        self.headers: list[str] = []
        prime = self.server.bouncer.authenticate

        def record(keycard: Any, connection: object = None) -> Any:
            if keycard.id is None:
                self.headers.append(keycard.clientFirst.partition("n=")[0])
            return prime(keycard, connection)

        self.patch(self.server.bouncer, "authenticate", record)

    def connect(self, options: object = None, tls12: bool = False) -> Any:
        return connectTLS(
            self.server.root,
            self.identity.serverOptions(tls12=tls12),
            options if options is not None else self.identity.verifying(),
            self.server.clock,
        )

    def login(self, connection: KeycardTestConnection, **options: Any) -> Any:
        return connection.loginWithKeycard(
            [SCRAMAnswerer("alice", "secret", **options)]
        )

    def test_tls13Exporter(self) -> None:
        """
        Over TLS 1.3 the client binds with C{tls-exporter}, whether or not
        it verified the server; asked or not whether the server binds.
        """
        for options in [None, unverified()]:
            self.successResultOf(self.login(self.connect(options)))
        connection = self.connect()
        d = connection.loginWithKeycard(
            [SCRAMAnswerer("alice", "secret")], askServer=False
        )
        self.successResultOf(d)
        self.assertEqual(self.headers, ["p=tls-exporter,,"] * 3)

    def test_tls12EndPoint(self) -> None:
        """
        Over TLS 1.2 the client binds with C{tls-server-end-point}; so it
        does over TLS 1.3 when it prefers that type.
        """
        self.successResultOf(self.login(self.connect(tls12=True)))
        types = (TLS_SERVER_END_POINT,)
        self.successResultOf(self.login(self.connect(), bindingTypes=types))
        self.assertEqual(self.headers, ["p=tls-server-end-point,,"] * 2)

    def test_plainTCP(self) -> None:
        """
        Without TLS the client does not bind; in C{require} mode it refuses
        to log in at all.
        """
        self.successResultOf(self.login(self.server.connect()))
        self.assertEqual(self.headers, ["n,,"])
        d = self.login(self.server.connect(), channelBinding="require")
        self.failureResultOf(d, ProtocolError)
        self.assertEqual(self.headers, ["n,,"])

    def test_relayCaught(self) -> None:
        """
        A relay between client and server, with its own TLS to each, passes
        every message along, but the client's binding names the relay's
        connection and the server refuses it.
        """
        evil = Identity.make("evil.example")
        relay = ManInTheMiddle.between(
            self.server.root,
            self.identity.serverOptions(),
            evil.serverOptions(),
            unverified(),
            self.server.clock,
        )
        d = relay.factory.login([SCRAMAnswerer("alice", "secret")])
        relay.flush()
        self.failureResultOf(d, KeycardRefused)
        # The client bound its proof to its connection, the relay's.
        self.assertIn(b"p=tls-exporter,,n=alice", relay.fromClient)

    def test_plusListingHidden(self) -> None:
        """
        A man in the middle who hides SCRAM-SHA-256-PLUS from the server's
        listing makes the client send C{y}, which the server, able to bind,
        refuses (RFC 5802's downgrade protection).
        """
        listed = self.server.root.kindsFor

        def hidden(broker: Any) -> list[str]:
            return [kind for kind in listed(broker) if kind != PLUS]

        self.patch(self.server.root, "kindsFor", hidden)
        d = self.connect().loginWithKeycard(
            [SCRAMAnswerer("alice", "secret")], askServer=True
        )
        self.failureResultOf(d, KeycardRefused)
        self.assertEqual(self.headers, ["y,,"])

    def test_kindsAnswerForged(self) -> None:
        """
        A man in the middle who answers the client's bound first message
        with the server's kinds, PLUS left out, makes the client send C{y}
        next, which the server, able to bind, refuses.
        """
        root = self.server.root
        real = root.login
        forged: list[list[str]] = []

        def forging(broker: Any, *args: Any) -> Any:
            if not forged:
                kinds = [kind for kind in root.kindsFor(broker) if kind != PLUS]
                forged.append(kinds)
                return succeed((b"kinds", kinds))
            return real(broker, *args)

        self.patch(root, "login", forging)
        self.failureResultOf(self.login(self.connect()), KeycardRefused)
        self.assertEqual(forged, [["scram-sha-256"]])
        self.assertEqual(self.headers, ["y,,"])

    def test_behindTLSTerminator(self) -> None:
        """
        A client on TLS whose requester has none (a proxy ends the TLS)
        binds first; the requester, without binding data, answers with its
        kinds, PLUS left out, and the client logs in with C{y}.
        """
        self.patch(_login, "channelBindings", lambda transport, asServer: dict(BOTH))
        seen: list[str] = []
        root = self.server.root
        real = root.login

        def recording(
            broker: Any, kind: bytes, flags: int, mind: Any, message: Any
        ) -> Any:
            seen.append(message[0].decode().partition("n=")[0])
            return real(broker, kind, flags, mind, message)

        self.patch(root, "login", recording)
        self.successResultOf(self.login(self.server.connect()))
        self.assertEqual(seen, ["p=tls-exporter,,", "y,,"])
        self.assertEqual(self.headers, ["y,,"])


class RemoteBouncerTests(SynchronousTestCase):
    """
    Through a remote bouncer, the binding that counts is that of the
    client's TLS connection to the requester, which forwards its data.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.identity = Identity.make()
        self.bouncer = Bouncer(
            [
                PassphraseChecker({"req1": "requester-secret"}),
                SCRAMVerifiers({"alice": Verifier.fromPassword("secret")}),
            ],
            MemoryStore(),
            clock=self.reactor,
        )
        self.seen: list[Any] = []
        authenticate = self.bouncer.authenticate

        def record(keycard: Any, connection: object = None) -> Any:
            self.seen.append(keycard)
            return authenticate(keycard, connection)

        self.patch(self.bouncer, "authenticate", record)
        realm = BouncerRealm(self.bouncer, {"req1"}, self.reactor)
        serviceRoot = KeycardRoot(self.bouncer, Portal(realm), "service")
        self.reactor.listenTCP(4321, KeycardServerFactory(serviceRoot))
        remote = RemoteBouncer(
            TCP4ClientEndpoint(self.reactor, "127.0.0.1", 4321),
            [PassphraseAnswerer("req1", "requester-secret")],
            clock=self.reactor,
        )
        self.root = KeycardRoot(remote, Portal(AvatarRealm()), "req1")
        remote.startService()
        self.addCleanup(remote.stopService)
        pump = ConnectionCompleter(self.reactor).succeedOnce()
        assert pump is not None
        self.pumps: list[IOPump] = [pump]
        self.flush()
        self.seen.clear()

    def flush(self) -> None:
        for _ in range(200):
            if not any([p.pump() for p in self.pumps]):  # noqa: C419 - every pump
                return
        raise AssertionError("still pumping")

    def test_forwarded(self) -> None:
        connection = connectTLS(
            self.root, self.identity.serverOptions(), unverified(), self.reactor
        )
        self.pumps.append(connection.pump)
        d = connection.factory.loginWithKeycard([SCRAMAnswerer("alice", "secret")])
        self.flush()
        self.assertEqual(self.successResultOf(d).keycard.avatarId, "alice")
        self.assertEqual(len(self.seen), 2)
        self.assertTrue(self.seen[0].clientFirst.startswith("p=tls-exporter,,"))
        requesterEnd = connection.serverBroker.transport
        expected = channelBindings(requesterEnd, asServer=True)
        for keycard in self.seen:
            self.assertEqual(keycard.channelBindings, expected)

    def test_relayCaught(self) -> None:
        relay = ManInTheMiddle.between(
            self.root,
            self.identity.serverOptions(),
            Identity.make("evil.example").serverOptions(),
            unverified(),
            self.reactor,
        )
        self.pumps.extend(relay.pumps)
        d = relay.factory.login([SCRAMAnswerer("alice", "secret")])
        self.flush()
        self.failureResultOf(d, KeycardRefused)
        self.assertEqual(len(self.seen), 2)
