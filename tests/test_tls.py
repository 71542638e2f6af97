"""
Keycards over real TLS on loopback: a password keycard (refused without
TLS) logs in, a client that trusts another certificate is refused, and a
man in the middle with a self-signed certificate for another name learns
no password or token and cannot relay a SCRAM login.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.cred.portal import Portal
from twisted.internet import ssl
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.internet.endpoints import (
    SSL4ClientEndpoint,
    SSL4ServerEndpoint,
    clientFromString,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from twisted_keycard import (
    Bouncer,
    InsecureTransport,
    KeycardClientFactory,
    KeycardRefused,
    KeycardRoot,
    KeycardServerFactory,
    MemoryStore,
)
from twisted_keycard.bouncer import TokenPolicy
from twisted_keycard.passwords import PasswordAnswerer, PasswordFile
from twisted_keycard.scram import SCRAMAnswerer, SCRAMVerifiers, Verifier
from twisted_keycard.service._datadir import makeDevCertificate
from twisted_keycard.tokens import TokenAnswerer

from ._procs import reactor
from ._realm import AvatarRealm

DATA = Path(__file__).resolve().parent / "data"

# Slow: real TLS on loopback.
pytestmark = pytest.mark.integration


class _Pipe(Protocol):
    """
    One side of a relay: writes what it reads to its peer (what arrives
    before the peer, once it is there), recording it if asked.
    """

    def __init__(self, pipes: list[_Pipe], seen: list[bytes] | None = None) -> None:
        pipes.append(self)
        self.seen = seen
        self.peer: _Pipe | None = None
        self.pending: list[bytes] = []
        self.closed: Deferred[None] = Deferred()

    def attach(self, peer: _Pipe) -> None:
        self.peer, peer.peer = peer, self
        for data in self.pending:
            peer.transport.write(data)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if self.seen is not None:
            self.seen.append(data)
        if self.peer is None or self.peer.transport is None:
            self.pending.append(data)
        else:
            self.peer.transport.write(data)

    def connectionLost(self, reason: object = None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.loseConnection()
        self.closed.callback(None)


class TLSTests(TestCase):
    def setUp(self) -> None:
        base = Path(self.mktemp()).resolve()
        self.server = base / "server.pem"
        self.trust = base / "trust" / "ca.pem"
        makeDevCertificate("localhost", self.server, self.trust)

    async def listen(self) -> int:
        bouncer = Bouncer(
            [
                PasswordFile(DATA / "htpasswd.txt"),
                SCRAMVerifiers({"alice": Verifier.fromPassword("secret")}),
            ],
            MemoryStore(),
            clock=reactor,
            tokens=TokenPolicy(),
        )
        bouncer.startService()
        self.addCleanup(bouncer.stopService)
        root = KeycardRoot(bouncer, Portal(AvatarRealm()), "tls")
        options = ssl.PrivateCertificate.loadPEM(self.server.read_bytes()).options()
        port = await SSL4ServerEndpoint(
            reactor, 0, options, interface="127.0.0.1"
        ).listen(KeycardServerFactory(root))
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    async def connect(self, portNumber: int, trusted: bytes) -> KeycardClientFactory:
        options = ssl.optionsForClientTLS(
            "localhost", trustRoot=ssl.Certificate.loadPEM(trusted)
        )
        factory = KeycardClientFactory()
        endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", portNumber, options)
        broker: Any = await endpoint.connect(factory)
        self.addCleanup(broker.transport.abortConnection)
        return factory

    def test_passwordOverTLS(self) -> Deferred[None]:
        async def go() -> None:
            factory = await self.connect(await self.listen(), self.trust.read_bytes())
            login = await factory.loginWithKeycard(
                [PasswordAnswerer("bcrypt", "bcrypt-pw")]
            )
            self.assertEqual(login.keycard.avatarId, "bcrypt")
            self.assertEqual(await login.perspective.callRemote("whoami"), "bcrypt")

        return ensureDeferred(go())

    def test_untrustedServerRefused(self) -> Deferred[None]:
        async def go() -> None:
            other = Path(self.mktemp()).resolve()
            makeDevCertificate("localhost", other / "s.pem", other / "ca.pem")
            factory = await self.connect(
                await self.listen(), (other / "ca.pem").read_bytes()
            )
            with self.assertRaises(Exception) as raised:
                await factory.login([PasswordAnswerer("bcrypt", "bcrypt-pw")])
            self.assertIn("certificate verify failed", str(raised.exception))

        return ensureDeferred(go())

    async def connectTo(self, endpoint: str) -> KeycardClientFactory:
        factory = KeycardClientFactory()
        broker: Any = await clientFromString(reactor, endpoint).connect(factory)
        self.addCleanup(broker.transport.abortConnection)
        return factory

    async def listenRelay(self, serverPort: int) -> tuple[int, list[bytes]]:
        """
        A man in the middle on loopback: it ends the client's TLS with a
        self-signed certificate for another name and opens its own TLS to
        the server, passing the plaintext along.

        @return: its port, and the plaintext it read from clients.
        """
        base = Path(self.mktemp()).resolve()
        makeDevCertificate("evil.example", base / "evil.pem", base / "evil-ca.pem")
        options = ssl.PrivateCertificate.loadPEM((base / "evil.pem").read_bytes())
        seen: list[bytes] = []
        pipes: list[_Pipe] = []
        upstream = SSL4ClientEndpoint(
            reactor, "127.0.0.1", serverPort, ssl.CertificateOptions()
        )

        def front() -> _Pipe:
            pipe = _Pipe(pipes, seen)
            back = upstream.connect(Factory.forProtocol(lambda: _Pipe(pipes)))
            back.addCallback(pipe.attach)
            return pipe

        async def closeAll() -> None:
            for pipe in pipes:
                if pipe.transport is not None and not pipe.closed.called:
                    pipe.transport.abortConnection()  # type: ignore[attr-defined]
            await DeferredList([pipe.closed for pipe in pipes])

        self.addCleanup(lambda: ensureDeferred(closeAll()))
        port = await SSL4ServerEndpoint(
            reactor, 0, options.options(), interface="127.0.0.1"
        ).listen(Factory.forProtocol(front))
        self.addCleanup(port.stopListening)
        return int(port.getHost().port), seen

    def test_manInTheMiddle(self) -> Deferred[None]:
        """
        Through a relay with a certificate for another name, reached with
        C{ssl:} (which checks nothing): the client refuses to send a
        password or a token, and the server refuses the SCRAM login the
        relay passes along, bound to the client's connection to the relay.
        """

        async def go() -> None:
            serverPort = await self.listen()
            direct = f"tls:localhost:{serverPort}:trustRoots={self.trust.parent}"
            login = await (await self.connectTo(direct)).loginWithKeycard(
                [SCRAMAnswerer("alice", "secret")]
            )
            token = login.keycard.token
            assert token is not None
            relayPort, seen = await self.listenRelay(serverPort)
            through = f"ssl:127.0.0.1:{relayPort}"
            for answerer in [
                PasswordAnswerer("bcrypt", "bcrypt-pw"),
                TokenAnswerer(token),
            ]:
                with self.assertRaises(InsecureTransport):
                    await (await self.connectTo(through)).login([answerer])
            with self.assertRaises(KeycardRefused):
                await (await self.connectTo(through)).login(
                    [SCRAMAnswerer("alice", "secret")]
                )
            relayed = b"".join(seen)
            self.assertIn(b"p=tls-exporter,,n=alice", relayed)
            self.assertNotIn(b"bcrypt-pw", relayed)
            self.assertNotIn(token.encode(), relayed)

        return ensureDeferred(go())

    def test_trustRootsEndpoint(self) -> Deferred[None]:
        """
        The C{tls:} endpoint with the right trust root checks the server:
        a password and a token log in, and SCRAM binds to the channel.
        """

        async def go() -> None:
            port = await self.listen()
            endpoint = f"tls:localhost:{port}:trustRoots={self.trust.parent}"
            login = await (await self.connectTo(endpoint)).loginWithKeycard(
                [SCRAMAnswerer("alice", "secret", channelBinding="require")]
            )
            assert login.keycard.token is not None
            for answerer in [
                PasswordAnswerer("bcrypt", "bcrypt-pw"),
                TokenAnswerer(login.keycard.token),
            ]:
                again = await (await self.connectTo(endpoint)).loginWithKeycard(
                    [answerer]
                )
                self.assertIsNotNone(again.keycard.avatarId)

        return ensureDeferred(go())
