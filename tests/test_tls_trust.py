"""
Tests for trust in the other end of a TLS connection: only TLS whose server
the client verified counts for keycards that must not be seen
(L{twisted_keycard.keycard._keycard}), the channel binding data each end
computes (L{twisted_keycard.keycard._keycard}), what the requester records,
and C{keycard login} refusing an C{ssl:} endpoint that checks nothing.
All over real TLS in memory: no sockets.
"""

from __future__ import annotations

import hashlib
import io
import sys
from typing import Any

import attrs
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides, implementer

from twisted_keycard import IAnswerer, InsecureTransport, Keycard
from twisted_keycard._hashpool import HashPool
from twisted_keycard.admin import _cli, _operations
from twisted_keycard.admin._login import checkEndpoint
from twisted_keycard.bouncer import TokenPolicy
from twisted_keycard.error import InvalidKeycard, KeycardError
from twisted_keycard.keycard import (
    TLS_EXPORTER,
    TLS_SERVER_END_POINT,
    channelBindings,
    serverVerified,
)
from twisted_keycard.keycard._keycard import (
    endPointHash,
    formatBindings,
    parseBindings,
)
from twisted_keycard.passwords import PasswordAnswerer, PasswordFile
from twisted_keycard.scram import SCRAMKeycard, SCRAMVerifiers
from twisted_keycard.testing import KeycardTestServer
from twisted_keycard.tokens import TokenAnswerer

from ._passphrase import PassphraseAnswerer, PassphraseChecker, PassphraseKeycard
from ._realm import AvatarRealm
from ._threads import inline
from ._tls import Identity, ManInTheMiddle, connectTLS, rsaKey, tlsPair, unverified
from .test_passwords import DATA


def handshake(
    identity: Identity, options: object, *, tls12: bool = False
) -> tuple[Any, Any]:
    """
    A TLS connection in memory to a server with C{identity}, after the
    handshake: its server and client ends.
    """
    server, client, pump = tlsPair(
        Protocol(), identity.serverOptions(tls12=tls12), Protocol(), options
    )
    pump.flush()
    return server, client


class ServerVerifiedTests(SynchronousTestCase):
    """
    L{serverVerified}: the client checked the certificate chain and the
    host name.
    """

    def test_verified(self) -> None:
        """
        Options that check the chain and the name, as C{tls:} and
        C{optionsForClientTLS} make, count; so does a host given as an IP
        address, checked against the address connected to.
        """
        identity = Identity.make()
        self.assertTrue(serverVerified(handshake(identity, identity.verifying())[1]))
        byAddress = Identity.make("127.0.0.1")
        client = handshake(byAddress, byAddress.verifying("127.0.0.1"))[1]
        self.assertTrue(serverVerified(client))

    def test_notVerified(self) -> None:
        """
        Plain TCP, a transport that only says it is TLS, TLS that checks
        nothing (C{ssl:HOST:PORT}), TLS that checks the chain but not the
        name (C{ssl:} with C{caCertsDir=} and no C{hostname=}), and the
        server's own end do not count.
        """
        identity = Identity.make()
        said = StringTransport()
        directlyProvides(said, ISSLTransport)
        server, _ = handshake(identity, identity.verifying())
        for transport in [
            None,
            StringTransport(),
            said,
            handshake(identity, unverified())[1],
            handshake(identity, identity.chainOnly())[1],
            server,
        ]:
            self.assertFalse(serverVerified(transport), transport)

    def test_chainWithAddress(self) -> None:
        """
        TLS that checks the chain of a certificate naming the address the
        client is connected to counts, even without a host name.
        """
        identity = Identity.make("127.0.0.1")
        self.assertTrue(serverVerified(handshake(identity, identity.chainOnly())[1]))


@attrs.frozen
class _Signed:
    """
    What L{endPointHash} reads of a certificate.
    """

    signature_hash_algorithm: hashes.HashAlgorithm
    der: bytes

    def public_bytes(self, encoding: serialization.Encoding) -> bytes:
        assert encoding is serialization.Encoding.DER
        return self.der


@implementer(IAnswerer)
@attrs.define
class _Forging:
    """
    An answerer whose keycards claim channel binding data.
    """

    answerer: PassphraseAnswerer
    keycardClass = PassphraseKeycard

    def start(self) -> Keycard:
        keycard = self.answerer.start()
        keycard.channelBindings = {TLS_EXPORTER: b"forged"}
        return keycard

    def answer(self, keycard: Keycard) -> Keycard:
        keycard = self.answerer.answer(keycard)
        keycard.channelBindings = {TLS_EXPORTER: b"forged"}
        return keycard

    def finish(self, keycard: Keycard) -> None:
        self.answerer.finish(keycard)


class ChannelBindingDataTests(SynchronousTestCase):
    """
    L{channelBindings}, L{endPointHash} and the wire form of bindings.
    """

    def test_bothEndsAgree(self) -> None:
        """
        Over TLS 1.3 both ends compute the same C{tls-exporter} (32 bytes)
        and C{tls-server-end-point} (SHA-256 of the certificate) data,
        whether or not the client verified the server.
        """
        identity = Identity.make()
        der = identity.certificate.public_bytes(serialization.Encoding.DER)
        for options in [identity.verifying(), unverified()]:
            server, client = handshake(identity, options)
            ours = channelBindings(server, asServer=True)
            theirs = channelBindings(client, asServer=False)
            self.assertEqual(ours, theirs)
            self.assertEqual(sorted(ours), [TLS_EXPORTER, TLS_SERVER_END_POINT])
            self.assertEqual(len(ours[TLS_EXPORTER]), 32)
            self.assertEqual(ours[TLS_SERVER_END_POINT], hashlib.sha256(der).digest())
        first = channelBindings(handshake(identity, unverified())[0], asServer=True)
        second = channelBindings(handshake(identity, unverified())[0], asServer=True)
        self.assertNotEqual(first[TLS_EXPORTER], second[TLS_EXPORTER])

    def test_tls12(self) -> None:
        """
        Over TLS 1.2 there is no C{tls-exporter} (RFC 9266 binds TLS 1.3's
        exporter only).
        """
        identity = Identity.make()
        server, client = handshake(identity, identity.verifying(), tls12=True)
        ours = channelBindings(server, asServer=True)
        self.assertEqual(list(ours), [TLS_SERVER_END_POINT])
        self.assertEqual(channelBindings(client, asServer=False), ours)

    def test_noTLS(self) -> None:
        said = StringTransport()
        directlyProvides(said, ISSLTransport)
        for transport in [None, StringTransport(), said]:
            self.assertEqual(channelBindings(transport, asServer=True), {})

    def test_endPointHash(self) -> None:
        """
        RFC 5929: the certificate's signature hash, SHA-256 for MD5 or
        SHA-1, none for a signature without a single hash (Ed25519).
        """
        for algorithm, expected in [
            (hashes.SHA384(), "sha384"),
            (hashes.SHA512(), "sha512"),
        ]:
            certificate = Identity.make(key=rsaKey(), algorithm=algorithm).certificate
            der = certificate.public_bytes(serialization.Encoding.DER)
            self.assertEqual(
                endPointHash(certificate), hashlib.new(expected, der).digest()
            )
        # This OpenSSL no longer signs with SHA-1 or MD5: their certificates
        # as endPointHash sees them.
        for weak in [hashes.SHA1(), hashes.MD5()]:  # noqa: S303
            old = _Signed(weak, b"an old certificate")
            self.assertEqual(
                endPointHash(old),  # type: ignore[arg-type]
                hashlib.sha256(b"an old certificate").digest(),
            )
        edwards = Identity.make(key=ed25519.Ed25519PrivateKey.generate())
        self.assertIsNone(endPointHash(edwards.certificate))

    def test_wireForm(self) -> None:
        bindings = {TLS_SERVER_END_POINT: b"\x01" * 48, TLS_EXPORTER: b"\x02" * 32}
        text = formatBindings(bindings)
        self.assertTrue(text.startswith("tls-exporter=AgIC"))
        self.assertEqual(parseBindings(text), bindings)
        self.assertEqual(parseBindings("tls-exporter=AQ=="), {TLS_EXPORTER: b"\x01"})
        for bad in [
            "",
            "tls-unique=AQ==",
            "tls-exporter=AQ==,tls-exporter=AQ==",
            "tls-exporter=AQ",
            "tls-exporter=AR==",
            "tls-exporter=" + "A" * 88 + "==",
            "tls-exporter",
        ]:
            self.assertRaises(ValueError, parseBindings, bad)

    def test_fieldChecked(self) -> None:
        """
        A peer's C{channelBindings} field is checked like any other.
        """
        keycard = Keycard.__new__(Keycard)
        self.assertRaises(
            InvalidKeycard,
            keycard.setCopyableState,
            b'{"channelBindings":"tls-unique=AQ=="}',
        )
        keycard.setCopyableState(b'{"channelBindings":"tls-exporter=AQ=="}')
        self.assertEqual(keycard.channelBindings, {TLS_EXPORTER: b"\x01"})


class RequesterTests(SynchronousTestCase):
    """
    What a L{KeycardRoot} records and advertises about its connection.
    """

    def setUp(self) -> None:
        self.identity = Identity.make()
        self.server = KeycardTestServer.build(
            [PassphraseChecker({"alice": "wonderland"})], AvatarRealm()
        )
        self.seen: list[Keycard] = []
        authenticate = self.server.bouncer.authenticate

        def record(keycard: Keycard, connection: object = None) -> Any:
            self.seen.append(keycard)
            return authenticate(keycard, connection)

        self.patch(self.server.bouncer, "authenticate", record)

    def test_bindingsFromOwnSide(self) -> None:
        """
        The requester records the channel binding data of its own end of
        the TLS connection on every message, whatever the client sent.
        """
        connection = connectTLS(
            self.server.root,
            self.identity.serverOptions(),
            unverified(),
            self.server.clock,
        )
        answerer = _Forging(PassphraseAnswerer("alice", "wonderland"))
        self.successResultOf(connection.login([answerer]))
        serverEnd = connection.serverBroker.transport
        expected = channelBindings(serverEnd, asServer=True)
        self.assertEqual(len(self.seen), 2)
        for keycard in self.seen:
            self.assertEqual(keycard.channelBindings, expected)

    def test_noBindingsWithoutTLS(self) -> None:
        connection = self.server.connect()
        answerer = _Forging(PassphraseAnswerer("alice", "wonderland"))
        self.successResultOf(connection.login([answerer]))
        self.assertEqual([k.channelBindings for k in self.seen], [None, None])

    def test_advertisesPlusOverTLS(self) -> None:
        """
        Over TLS, C{keycardClasses()} lists a kind's C{channelBoundType}
        after it; without TLS it does not.
        """
        checkers = [PassphraseChecker({}), SCRAMVerifiers({})]
        server = KeycardTestServer.build(checkers, AvatarRealm())
        plain = server.connect()
        tls = connectTLS(
            server.root, self.identity.serverOptions(), unverified(), server.clock
        )
        expected = [PassphraseKeycard.kind, SCRAMKeycard.kind]
        for connection, tags in [
            (plain, expected),
            (tls, [*expected, "scram-sha-256-plus"]),
        ]:
            root = self.successResultOf(connection.factory.getRootObject())
            d = root.callRemote("keycardClasses")
            connection.flush()
            self.assertEqual(self.successResultOf(d), tags)


class ManInTheMiddleTests(SynchronousTestCase):
    """
    A relay that ends the client's TLS with a certificate for another name
    and opens its own TLS to the server: what crosses it.
    """

    def setUp(self) -> None:
        self.identity = Identity.make()
        self.evil = Identity.make("evil.example")
        self.server = KeycardTestServer.build(
            [
                PassphraseChecker({"alice": "wonderland"}),
                PasswordFile(
                    DATA / "htpasswd.txt",
                    runInThread=inline,
                    hashPool=HashPool(threads=1, queued=0, runner=inline),
                ),
            ],
            AvatarRealm(),
            tokens=TokenPolicy(),
        )
        self.server.bouncer.startService()
        self.addCleanup(self.server.bouncer.stopService)

    def relay(self, clientOptions: object) -> ManInTheMiddle:
        return ManInTheMiddle.between(
            self.server.root,
            self.identity.serverOptions(),
            self.evil.serverOptions(),
            clientOptions,
            self.server.clock,
        )

    def token(self) -> str:
        connection = connectTLS(
            self.server.root,
            self.identity.serverOptions(),
            self.identity.verifying(),
            self.server.clock,
        )
        d = connection.loginWithKeycard([PassphraseAnswerer("alice", "wonderland")])
        token = self.successResultOf(d).keycard.token
        assert token is not None
        return token

    def test_passwordNeverReachesRelay(self) -> None:
        """
        A client that does not verify the server refuses to send a password
        keycard: the relay never sees the password.
        """
        for options in [unverified(), self.evil.chainOnly()]:
            relay = self.relay(options)
            d = relay.factory.login([PasswordAnswerer("bcrypt", "bcrypt-pw")])
            relay.flush()
            self.failureResultOf(d, InsecureTransport)
            self.assertNotIn(b"bcrypt-pw", relay.fromClient)
            self.assertNotIn(b"twisted_keycard.password", relay.fromClient)
            # The relay got as far as reading the client's plaintext.
            d = relay.factory.login(
                [PasswordAnswerer("bcrypt", "bcrypt-pw")], askServer=True
            )
            relay.flush()
            self.failureResultOf(d, InsecureTransport)
            self.assertIn(b"keycardClasses", relay.fromClient)

    def test_tokenNeverReachesRelay(self) -> None:
        """
        A token, which whoever reads it can present, is not sent over TLS
        the client did not verify, so the relay never sees it.
        """
        token = self.token()
        relay = self.relay(unverified())
        d = relay.factory.login([TokenAnswerer(token)])
        relay.flush()
        self.failureResultOf(d, InsecureTransport)
        self.assertNotIn(token.encode(), relay.fromClient)

    def test_verifiedClientCannotBeRelayed(self) -> None:
        """
        A client that verifies the server does not even finish the TLS
        handshake with the relay.
        """
        relay = self.relay(self.identity.verifying())
        d = relay.factory.login([PasswordAnswerer("bcrypt", "bcrypt-pw")])
        relay.flush()
        self.failureResultOf(d)
        self.assertEqual(relay.fromClient, b"")

    def test_verifiedTLS(self) -> None:
        """
        Over TLS the client verified, a password and a token log in.
        """
        token = self.token()
        for answerer in [PasswordAnswerer("bcrypt", "bcrypt-pw"), TokenAnswerer(token)]:
            connection = connectTLS(
                self.server.root,
                self.identity.serverOptions(),
                self.identity.verifying(),
                self.server.clock,
            )
            d = connection.loginWithKeycard([answerer])
            self.assertIsNotNone(self.successResultOf(d).keycard.avatarId)

    def test_tokenOverPlainTCP(self) -> None:
        """
        Plain TCP is a visible choice: a token still goes (the bouncer can
        bind it to the client's address).
        """
        d = self.server.connect().loginWithKeycard([TokenAnswerer(self.token())])
        self.assertEqual(self.successResultOf(d).keycard.avatarId, "alice")


class LoginCommandTests(SynchronousTestCase):
    """
    C{keycard login} refuses an C{ssl:} endpoint that does not check the
    server, before connecting or asking for a password.
    """

    def test_checkEndpoint(self) -> None:
        for endpoint in [
            "ssl:127.0.0.1:8800",
            "SSL:host=localhost:port=8800",
            "ssl:localhost:8800:caCertsDir=/etc/ssl/certs",
            "ssl:localhost:8800:caCertsDir=/x\\:hostname=y",
        ]:
            error = self.assertRaises(KeycardError, checkEndpoint, endpoint)
            self.assertIn("tls:HOST:PORT:trustRoots=DIR", str(error))
        for endpoint in [
            "tls:localhost:8800:trustRoots=/x",
            "tcp:localhost:8800",
            "ssl:localhost:8800:hostname=localhost:caCertsDir=/x",
            "ssl:localhost:8800:hostname=localhost",
        ]:
            checkEndpoint(endpoint)

    def test_loginRefused(self) -> None:
        def noPassword(prompt: str = "") -> str:
            raise AssertionError("asked for a password")

        self.patch(_cli, "readPassword", noPassword)
        self.patch(_operations, "runReactor", noPassword)
        for argv in [
            ["login", "--connect", "ssl:127.0.0.1:8800", "alice"],
            ["login", "--connect", "ssl:127.0.0.1:8800", "--token-file", "t"],
        ]:
            stderr = io.StringIO()
            self.patch(sys, "stderr", stderr)
            self.assertEqual(_cli.main(argv), _operations.EXIT_ERROR)
            lines = stderr.getvalue().splitlines()
            self.assertEqual(len(lines), 1, lines)
            self.assertIn("connect with tls:HOST:PORT:trustRoots=DIR", lines[0])
