"""
Keycards over real TLS on loopback: a password keycard (refused without
TLS) logs in, and a client that trusts another certificate is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.cred.portal import Portal
from twisted.internet import ssl
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import SSL4ClientEndpoint, SSL4ServerEndpoint
from twisted.trial.unittest import TestCase

from twisted_keycard import (
    Bouncer,
    KeycardClientFactory,
    KeycardRoot,
    KeycardServerFactory,
)
from twisted_keycard.passwords import PasswordAnswerer, PasswordFile
from twisted_keycard.service._devcert import makeDevCertificate

from ._procs import reactor
from ._realm import AvatarRealm

DATA = Path(__file__).resolve().parent / "data"

# Slow: real TLS on loopback.
pytestmark = pytest.mark.integration


class TLSTests(TestCase):
    def setUp(self) -> None:
        base = Path(self.mktemp()).resolve()
        self.server = base / "server.pem"
        self.trust = base / "trust" / "ca.pem"
        makeDevCertificate("localhost", self.server, self.trust)

    async def listen(self) -> int:
        bouncer = Bouncer([PasswordFile(DATA / "htpasswd.txt")], clock=reactor)
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
