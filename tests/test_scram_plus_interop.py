"""
SCRAM-SHA-256-PLUS interoperability with scramp, on either side: with
fixed binding data, and over real TLS in memory with scramp computing the
C{tls-server-end-point} data itself (from the certificate, with its own
ASN.1 code).  scramp does not implement C{tls-exporter}, so that type is
tested between our own client and server only (test_scram_plus).
"""

from __future__ import annotations

from typing import Any

import attrs
import scramp
from cryptography.hazmat.primitives import serialization
from scramp.core import CBindData
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from twisted_keycard.error import KeycardRefused, ProtocolError
from twisted_keycard.interfaces import IAnswerer, IChallenger, IExchange
from twisted_keycard.keycard import TLS_SERVER_END_POINT, ClientChannel
from twisted_keycard.keycard._keycard import Keycard
from twisted_keycard.scram import (
    SCRAMAnswerer,
    SCRAMExchange,
    SCRAMKeycard,
    SCRAMVerifiers,
    Verifier,
)
from twisted_keycard.testing import KeycardTestServer

from ._realm import AvatarRealm
from ._tls import Identity, connectTLS, unverified

PLUS = "SCRAM-SHA-256-PLUS"
PLAIN = "SCRAM-SHA-256"
DATA = b"\x5a" * 32
END_POINT_ONLY = (TLS_SERVER_END_POINT,)


def bound(data: bytes) -> tuple[str, bytes]:
    return (TLS_SERVER_END_POINT, data)


class FixedDataTests(SynchronousTestCase):
    """
    Fixed C{tls-server-end-point} data, no TLS.
    """

    def setUp(self) -> None:
        self.checker = SCRAMVerifiers({"alice": Verifier.fromPassword("secret")})
        self.info = scramp.ScramMechanism(PLAIN).make_auth_info("secret", 4096)

    def scrampClient(self, client: scramp.ScramClient, ours: bytes) -> Deferred[Any]:
        """
        scramp's client against our checker, whose requester gives C{ours}.

        @return: the checker's answer, after scramp took our signature.
        """
        bindings = {TLS_SERVER_END_POINT: ours}
        keycard = SCRAMKeycard(clientFirst=client.get_client_first())
        keycard.channelBindings = bindings
        d = self.checker.prime(keycard)
        if not isinstance(exchange := self.successResultOf(d), SCRAMExchange):
            raise AssertionError(exchange)
        exchange.challenge(keycard)
        client.set_server_first(keycard.serverFirst)
        keycard.clientFinal = client.get_client_final()
        exchange.answer(keycard)
        checked = self.checker.requestAvatarId(exchange)
        exchange.conclude(keycard)
        client.set_server_final(keycard.serverFinal)
        return checked

    def test_scrampClient(self) -> None:
        client = scramp.ScramClient([PLUS], "alice", "secret", bound(DATA))
        self.assertEqual(self.successResultOf(self.scrampClient(client, DATA)), "alice")

    def test_scrampClientOtherChannel(self) -> None:
        client = scramp.ScramClient([PLUS], "alice", "secret", bound(DATA))
        self.assertRaises(ProtocolError, self.scrampClient, client, b"\x00" * 32)

    def test_scrampClientDowngraded(self) -> None:
        """
        scramp's client that could bind but was offered plain SCRAM sends
        C{y}, which our server, able to bind, refuses.
        """
        client = scramp.ScramClient([PLAIN], "alice", "secret", bound(DATA))
        keycard = SCRAMKeycard(clientFirst=client.get_client_first())
        self.assertEqual(str(keycard.clientFirst)[:3], "y,,")
        keycard.channelBindings = {TLS_SERVER_END_POINT: DATA}
        self.failureResultOf(self.checker.prime(keycard), ProtocolError)

    def ourClient(
        self, channel: ClientChannel, server: Any
    ) -> tuple[SCRAMAnswerer, SCRAMKeycard]:
        answerer = SCRAMAnswerer("alice", "secret", bindingTypes=END_POINT_ONLY)
        keycard = answerer.startBound(channel)
        server.set_client_first(keycard.clientFirst)
        keycard.serverFirst = server.get_server_first()
        answerer.answer(keycard)
        return answerer, keycard

    def test_scrampServer(self) -> None:
        server = scramp.ScramMechanism(PLUS).make_server(
            lambda username: self.info, channel_binding=bound(DATA)
        )
        channel = ClientChannel({TLS_SERVER_END_POINT: DATA}, True)
        answerer, keycard = self.ourClient(channel, server)
        server.set_client_final(keycard.clientFinal)
        keycard.serverFinal = server.get_server_final()
        answerer.finish(keycard)

    def test_scrampServerOtherChannel(self) -> None:
        server = scramp.ScramMechanism(PLUS).make_server(
            lambda username: self.info, channel_binding=bound(DATA)
        )
        channel = ClientChannel({TLS_SERVER_END_POINT: b"\x00" * 32}, True)
        _, keycard = self.ourClient(channel, server)
        with self.assertRaises(scramp.ScramException) as caught:
            server.set_client_final(keycard.clientFinal)
        self.assertIn("channel bindings don't match", str(caught.exception))

    def test_scrampServerSeesDowngrade(self) -> None:
        """
        Our client told the server cannot bind sends C{y}; scramp's server,
        able to bind, refuses it.
        """
        server = scramp.ScramMechanism(PLAIN).make_server(
            lambda username: self.info, channel_binding=bound(DATA)
        )
        answerer = SCRAMAnswerer("alice", "secret")
        keycard = answerer.startBound(
            ClientChannel({TLS_SERVER_END_POINT: DATA}, False)
        )
        with self.assertRaises(scramp.ScramException) as caught:
            server.set_client_first(keycard.clientFirst)
        self.assertIn("'y'", str(caught.exception))


@implementer(IAnswerer)
@attrs.define
class _ScrampAnswerer:
    """
    scramp's client as the answerer of a PB login.
    """

    client: scramp.ScramClient
    keycardClass = SCRAMKeycard

    def start(self) -> Keycard:
        return SCRAMKeycard(clientFirst=self.client.get_client_first())

    def answer(self, keycard: Keycard) -> Keycard:
        assert isinstance(keycard, SCRAMKeycard)
        self.client.set_server_first(keycard.serverFirst)
        keycard.clientFinal = self.client.get_client_final()
        return keycard

    def finish(self, keycard: Keycard) -> None:
        assert isinstance(keycard, SCRAMKeycard)
        self.client.set_server_final(keycard.serverFinal)


class _IScrampExchange(IExchange):
    pass


@implementer(_IScrampExchange)
@attrs.define
class _ScrampExchange:
    server: Any

    def challenge(self, keycard: Keycard) -> bool:
        assert isinstance(keycard, SCRAMKeycard)
        keycard.serverFirst = self.server.get_server_first()
        return True

    def answer(self, keycard: Keycard) -> None:
        assert isinstance(keycard, SCRAMKeycard)
        try:
            self.server.set_client_final(keycard.clientFinal)
        except scramp.ScramException as e:
            raise ProtocolError(str(e)) from None

    def conclude(self, keycard: Keycard) -> None:
        assert isinstance(keycard, SCRAMKeycard)
        keycard.serverFinal = self.server.get_server_final()


@implementer(IChallenger, ICredentialsChecker)
@attrs.define
class _ScrampVerifiers:
    """
    scramp's server as a bouncer's challenger and checker, binding to the
    certificate in C{pem} (scramp reads and hashes it itself).
    """

    info: Any
    pem: str
    keycardClasses = (SCRAMKeycard,)
    credentialInterfaces = (_IScrampExchange,)

    def prime(self, keycard: Keycard) -> Deferred[IExchange]:
        assert isinstance(keycard, SCRAMKeycard)
        server = scramp.ScramMechanism(PLUS).make_server(
            lambda username: self.info, channel_binding=(TLS_SERVER_END_POINT, self.pem)
        )
        try:
            server.set_client_first(keycard.clientFirst)
        except scramp.ScramException as e:
            return fail(ProtocolError(str(e)))
        return succeed(_ScrampExchange(server))

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        return succeed("alice")


class TLSTests(SynchronousTestCase):
    """
    Over real TLS in memory: each side computes its binding data from its
    own end of the connection, scramp with its own code.
    """

    def setUp(self) -> None:
        self.identity = Identity.make()
        self.pem = self.identity.certificate.public_bytes(
            serialization.Encoding.PEM
        ).decode("ascii")
        self.der = self.identity.certificate.public_bytes(serialization.Encoding.DER)

    def test_scrampClient(self) -> None:
        """
        scramp's client, given the end-point hash scramp computes from the
        server's certificate, logs in to our server over TLS.
        """
        server = KeycardTestServer.build(
            [SCRAMVerifiers({"alice": Verifier.fromPassword("secret")})],
            AvatarRealm(),
        )
        connection = connectTLS(
            server.root, self.identity.serverOptions(), unverified(), server.clock
        )
        transport: Any = connection.clientBroker.transport
        peer = transport.getHandle().get_peer_certificate()
        der = peer.to_cryptography().public_bytes(serialization.Encoding.DER)
        data = CBindData.from_der(der).data
        client = scramp.ScramClient([PLUS], "alice", "secret", bound(data))
        d = connection.loginWithKeycard([_ScrampAnswerer(client)])
        self.assertEqual(self.successResultOf(d).keycard.avatarId, "alice")
        wrong = scramp.ScramClient([PLUS], "alice", "secret", bound(b"\x00" * 32))
        d = connection.loginWithKeycard([_ScrampAnswerer(wrong)])
        self.failureResultOf(d, KeycardRefused)

    def test_scrampServer(self) -> None:
        """
        Our client logs in over TLS to a bouncer whose SCRAM is scramp's,
        binding to the certificate scramp read from PEM; a client bound to
        another certificate (a relay's) is refused.
        """
        info = scramp.ScramMechanism(PLAIN).make_auth_info("secret", 4096)
        server = KeycardTestServer.build(
            [_ScrampVerifiers(info, self.pem)], AvatarRealm()
        )
        connection = connectTLS(
            server.root,
            self.identity.serverOptions(),
            self.identity.verifying(),
            server.clock,
        )
        answerer = SCRAMAnswerer("alice", "secret", bindingTypes=END_POINT_ONLY)
        d = connection.loginWithKeycard([answerer])
        self.assertEqual(self.successResultOf(d).keycard.avatarId, "alice")
        other = Identity.make()
        otherPem = other.certificate.public_bytes(serialization.Encoding.PEM)
        server = KeycardTestServer.build(
            [_ScrampVerifiers(info, otherPem.decode())], AvatarRealm()
        )
        connection = connectTLS(
            server.root,
            self.identity.serverOptions(),
            self.identity.verifying(),
            server.clock,
        )
        d = connection.loginWithKeycard([answerer])
        self.failureResultOf(d, KeycardRefused)
