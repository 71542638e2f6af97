"""
Tests for L{twisted_keycard.scram}: interop with the scramp library both
ways, the refusals, and what crosses the wire (the RFC 7677 vector itself is
in test_scram_exchange).
"""

from __future__ import annotations

import json
from base64 import b64decode, b64encode
from typing import Any

import scramp
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import InvalidKeycard, KeycardRefused
from twisted_keycard.error import ProtocolError, ServerAuthenticationFailed
from twisted_keycard.scram import (
    ClientFirst,
    SCRAMAnswerer,
    SCRAMExchange,
    SCRAMKeyCache,
    SCRAMKeycard,
    SCRAMVerifiers,
    ServerFirst,
    Verifier,
    readVerifiers,
)
from twisted_keycard.testing import KeycardTestServer

from ._realm import AvatarRealm

# RFC 7677, section 3.
USER, PASSWORD = "user", "pencil"
CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
SERVER_NONCE = CLIENT_NONCE + "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
SALT = b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
CLIENT_FIRST = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
SERVER_FIRST = f"r={SERVER_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
CLIENT_FINAL = f"c=biws,r={SERVER_NONCE},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
SERVER_FINAL = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def runExchange(
    checker: SCRAMVerifiers, answerer: SCRAMAnswerer
) -> tuple[SCRAMKeycard, SCRAMExchange]:
    keycard = answerer.start()
    assert isinstance(keycard, SCRAMKeycard)
    exchange = checker.prime(keycard)
    return keycard, exchange.result  # type: ignore[return-value]


class ExchangeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.checker = SCRAMVerifiers({"alice": Verifier.fromPassword("secret")})

    def login(self, username: str, password: str) -> tuple[SCRAMKeycard, SCRAMExchange]:
        answerer = SCRAMAnswerer(username, password)
        keycard, exchange = runExchange(self.checker, answerer)
        exchange.challenge(keycard)
        answerer.answer(keycard)
        exchange.answer(keycard)
        return keycard, exchange

    def test_success(self) -> None:
        answerer = SCRAMAnswerer("alice", "secret")
        keycard, exchange = runExchange(self.checker, answerer)
        exchange.challenge(keycard)
        answerer.answer(keycard)
        exchange.answer(keycard)
        self.assertEqual(
            self.successResultOf(self.checker.requestAvatarId(exchange)), "alice"
        )
        exchange.conclude(keycard)
        answerer.finish(keycard)

    def test_wrongPassword(self) -> None:
        _, exchange = self.login("alice", "wrong")
        failure = self.failureResultOf(
            self.checker.requestAvatarId(exchange), KeycardRefused
        )
        self.assertEqual(failure.getErrorMessage(), KeycardRefused.MESSAGE)

    def test_unknownUserLooksTheSame(self) -> None:
        """
        An unknown user gets a challenge of the same shape (salt length,
        iteration count), stable for that name, and the same refusal.
        """
        realKeycard, real = self.login("alice", "wrong")
        mockKeycard, mock = self.login("mallory", "wrong")
        assert realKeycard.serverFirst and mockKeycard.serverFirst
        realFirst = ServerFirst.parse(realKeycard.serverFirst)
        mockFirst = ServerFirst.parse(mockKeycard.serverFirst)
        self.assertEqual(len(mockFirst.salt), len(realFirst.salt))
        self.assertEqual(mockFirst.iterations, realFirst.iterations)
        self.assertEqual(len(mockFirst.nonce), len(realFirst.nonce))
        again, _ = self.login("mallory", "other")
        assert again.serverFirst
        self.assertEqual(ServerFirst.parse(again.serverFirst).salt, mockFirst.salt)
        self.assertNotEqual(
            self.login("trudy", "x")[0].serverFirst, mockKeycard.serverFirst
        )
        realFailure = self.failureResultOf(self.checker.requestAvatarId(real))
        mockFailure = self.failureResultOf(self.checker.requestAvatarId(mock))
        self.assertEqual(
            (realFailure.type, realFailure.getErrorMessage()),
            (mockFailure.type, mockFailure.getErrorMessage()),
        )

    def test_unknownUserRightPasswordStillRefused(self) -> None:
        """
        Even a proof that matches the mock keys is refused.
        """
        _, exchange = self.login("mallory", "x")
        exchange.known = False
        exchange.verifier = Verifier.fromPassword("x", 4096, exchange.verifier.salt)
        self.failureResultOf(self.checker.requestAvatarId(exchange), KeycardRefused)

    def test_finalForAnotherExchange(self) -> None:
        """
        A client-final message made for one exchange is refused by another
        (the nonce differs).
        """
        keycard, _ = self.login("alice", "secret")
        other, exchange = runExchange(self.checker, SCRAMAnswerer("alice", "secret"))
        exchange.challenge(other)
        other.clientFinal = keycard.clientFinal
        self.assertRaises(ProtocolError, exchange.answer, other)

    def test_tamperedChannelBinding(self) -> None:
        answerer = SCRAMAnswerer("alice", "secret")
        keycard, exchange = runExchange(self.checker, answerer)
        exchange.challenge(keycard)
        answerer.answer(keycard)
        assert keycard.clientFinal
        keycard.clientFinal = keycard.clientFinal.replace("c=biws", "c=eSws")
        self.assertRaises(ProtocolError, exchange.answer, keycard)

    def test_tamperedProof(self) -> None:
        answerer = SCRAMAnswerer("alice", "secret")
        keycard, exchange = runExchange(self.checker, answerer)
        exchange.challenge(keycard)
        answerer.answer(keycard)
        assert keycard.clientFinal
        prefix, _, proof = keycard.clientFinal.rpartition(",p=")
        flipped = bytearray(b64decode(proof))
        flipped[0] ^= 1
        keycard.clientFinal = f"{prefix},p={b64encode(bytes(flipped)).decode()}"
        exchange.answer(keycard)
        self.failureResultOf(self.checker.requestAvatarId(exchange), KeycardRefused)

    def test_clientRefusesTamperedChallenge(self) -> None:
        """
        The client refuses a server nonce that does not extend its own, and
        absurd iteration counts.
        """
        answerer = SCRAMAnswerer("alice", "secret", nonce="abc")
        keycard = answerer.start()
        assert isinstance(keycard, SCRAMKeycard)
        for bad in [
            "r=xyzdef,s=QUJD,i=4096",
            "r=abc,s=QUJD,i=4096",
            "r=abcdef,s=QUJD,i=4095",
            "r=abcdef,s=QUJD,i=1000001",
            "r=abcdef,s=QUJD,i=99999999999",
        ]:
            keycard.serverFirst = bad
            self.assertRaises(ProtocolError, answerer.answer, keycard)

    def test_clientChecksServerSignature(self) -> None:
        answerer = SCRAMAnswerer("alice", "secret")
        keycard, exchange = runExchange(self.checker, answerer)
        exchange.challenge(keycard)
        answerer.answer(keycard)
        exchange.answer(keycard)
        self.successResultOf(self.checker.requestAvatarId(exchange))
        for bad in [
            None,
            "v=" + b64encode(bytes(32)).decode(),
            "e=other-error",
            "v=!!",
        ]:
            keycard.serverFinal = bad
            self.assertRaises(ServerAuthenticationFailed, answerer.finish, keycard)

    def test_finishWithoutExchange(self) -> None:
        self.assertRaises(
            ServerAuthenticationFailed, SCRAMAnswerer("a", "b").finish, SCRAMKeycard()
        )

    def test_keyCache(self) -> None:
        """
        Answerers sharing a key cache derive the keys once per salt.
        """
        cache = SCRAMKeyCache()
        for _ in range(3):
            answerer = SCRAMAnswerer("alice", "secret", cache=cache)
            keycard, exchange = runExchange(self.checker, answerer)
            exchange.challenge(keycard)
            answerer.answer(keycard)
            exchange.answer(keycard)
            self.successResultOf(self.checker.requestAvatarId(exchange))
            exchange.conclude(keycard)
            answerer.finish(keycard)
        self.assertEqual(repr(cache), "<SCRAMKeyCache of 1>")

    def test_passwordNotInRepr(self) -> None:
        self.assertNotIn("hunter2", repr(SCRAMAnswerer("alice", "hunter2")))
        self.assertNotIn(
            b64encode(Verifier.fromPassword("x").storedKey).decode(),
            repr(Verifier.fromPassword("x")),
        )


class MessageTests(SynchronousTestCase):
    def test_malformedClientFirst(self) -> None:
        for bad in [
            None,
            "",
            "n,,",
            "n=user,r=abc",
            "x,,n=user,r=abc",
            "p=tls-unique,,n=user,r=abc",
            "n,a=admin,n=user,r=abc",
            "n,,n=us=er,r=abc",
            "n,,n=,r=abc",
            "n,,r=abc,n=user",
            "n,,m=ext,n=user,r=abc",
            "n,,n=user,r=ab,c",
            "n,,n=user,r=a b",
            "n,,n=user,r=" + "a" * 300,
            "n,,n=user,r=abc,x=1",
            "n,,n=" + "u" * 2000 + ",r=abc",
        ]:
            self.assertRaises(ProtocolError, ClientFirst.parse, bad)

    def test_escapedName(self) -> None:
        first = ClientFirst.parse("n,,n=a=2Cb=3Dc,r=abc")
        self.assertEqual(first.username, "a,b=c")
        self.assertEqual(first.bare, "n=a=2Cb=3Dc,r=abc")

    def test_malformedServerFirst(self) -> None:
        for bad in [
            "",
            "r=abc,s=QUJD",
            "r=abc,s=QUJD,i=x",
            "r=abc,s=***,i=1",
            "r=abc,s=,i=1",
        ]:
            self.assertRaises(ProtocolError, ServerFirst.parse, bad)

    def test_serverRefusesMalformedFinal(self) -> None:
        checker = SCRAMVerifiers({"alice": Verifier.fromPassword("secret")})
        for bad in [None, "", "c=biws", "c=biws,r=x,p=***", "p=AAAA,c=biws,r=x"]:
            keycard, exchange = runExchange(checker, SCRAMAnswerer("alice", "secret"))
            exchange.challenge(keycard)
            keycard.clientFinal = bad
            self.assertRaises(ProtocolError, exchange.answer, keycard)

    def test_oversizedField(self) -> None:
        keycard = SCRAMKeycard()
        self.assertRaises(
            InvalidKeycard,
            keycard.setCopyableState,
            {"clientFirst": "n,,n=a,r=" + "x" * 2000},
        )
        self.assertRaises(InvalidKeycard, keycard.setCopyableState, {"password": "x"})


class VerifierTests(SynchronousTestCase):
    def test_roundTrip(self) -> None:
        verifier = Verifier.fromPassword("secret", 5000)
        text = verifier.toString()
        self.assertTrue(text.startswith("SCRAM-SHA-256$5000:"))
        self.assertEqual(Verifier.fromString(text), verifier)

    def test_postgresqlFormat(self) -> None:
        """
        A verifier made by scramp (as PostgreSQL makes them) reads back.
        """
        mechanism = scramp.ScramMechanism("SCRAM-SHA-256")
        salt, stored, server, iterations = mechanism.make_auth_info(
            "secret", 4096, SALT
        )
        text = (
            f"SCRAM-SHA-256${iterations}:{b64encode(salt).decode()}"
            f"${b64encode(stored).decode()}:{b64encode(server).decode()}"
        )
        verifier = Verifier.fromString(text)
        self.assertEqual(verifier, Verifier.fromPassword("secret", 4096, SALT))

    def test_bad(self) -> None:
        for bad in [
            "",
            "md5abc",
            "SCRAM-SHA-256$x:AA==$AA==:AA==",
            "SCRAM-SHA-256$4096:QUJD$QUJD:QUJD",
        ]:
            self.assertRaises(ValueError, Verifier.fromString, bad)

    def test_file(self) -> None:
        good = Verifier.fromPassword("secret").toString()
        verifiers = readVerifiers(f"# users\n\nalice:{good}\nbob:{good}\n")
        self.assertEqual(sorted(verifiers), ["alice", "bob"])
        error = self.assertRaises(
            ValueError, readVerifiers, f"alice:{good}\nbob:SCRAM-SHA-256$secretstuff\n"
        )
        self.assertIn("line 2", str(error))
        self.assertNotIn("secretstuff", str(error))

    def test_fileReloads(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f"alice:{Verifier.fromPassword('a').toString()}\n")
        checker = SCRAMVerifiers.fromFile(path)
        with open(path, "a") as f:
            f.write(f"bob:{Verifier.fromPassword('b').toString()}\n")
        _, exchange = runExchange(checker, SCRAMAnswerer("bob", "b"))
        self.assertTrue(exchange.known)


class InteropTests(SynchronousTestCase):
    """
    The scramp library as the peer on either side.
    """

    def test_scrampClientOurServer(self) -> None:
        checker = SCRAMVerifiers({"alice": Verifier.fromPassword("secret")})
        client = scramp.ScramClient(["SCRAM-SHA-256"], "alice", "secret")
        keycard = SCRAMKeycard(clientFirst=client.get_client_first())
        exchange = self.successResultOf(checker.prime(keycard))
        exchange.challenge(keycard)
        client.set_server_first(keycard.serverFirst)
        keycard.clientFinal = client.get_client_final()
        exchange.answer(keycard)
        self.assertEqual(
            self.successResultOf(checker.requestAvatarId(exchange)), "alice"
        )
        exchange.conclude(keycard)
        client.set_server_final(keycard.serverFinal)

    def test_scrampServerOurClient(self) -> None:
        mechanism = scramp.ScramMechanism("SCRAM-SHA-256")
        info = mechanism.make_auth_info("secret", 4096)
        server = mechanism.make_server(lambda username: info)
        answerer = SCRAMAnswerer("alice", "secret")
        keycard = answerer.start()
        assert isinstance(keycard, SCRAMKeycard)
        server.set_client_first(keycard.clientFirst)
        keycard.serverFirst = server.get_server_first()
        answerer.answer(keycard)
        server.set_client_final(keycard.clientFinal)
        keycard.serverFinal = server.get_server_final()
        answerer.finish(keycard)

    def test_scrampServerWrongPassword(self) -> None:
        mechanism = scramp.ScramMechanism("SCRAM-SHA-256")
        info = mechanism.make_auth_info("secret", 4096)
        server = mechanism.make_server(lambda username: info)
        answerer = SCRAMAnswerer("alice", "wrong")
        keycard = answerer.start()
        assert isinstance(keycard, SCRAMKeycard)
        server.set_client_first(keycard.clientFirst)
        keycard.serverFirst = server.get_server_first()
        answerer.answer(keycard)
        self.assertRaises(
            scramp.ScramException, server.set_client_final, keycard.clientFinal
        )


class WireTests(SynchronousTestCase):
    """
    What a SCRAM login puts on the wire: each message carries only what the
    other side needs (docs/protocol.rst, "A worked example").
    """

    def test_fieldsOnTheWire(self) -> None:
        verifier = Verifier.fromPassword(PASSWORD, 4096, SALT)
        server = KeycardTestServer.build(
            [SCRAMVerifiers({USER: verifier})], AvatarRealm(), requesterName="chat"
        )
        connection = server.connect(clientHost="192.0.2.7")
        sent: dict[str, list[set[str]]] = {"client": [], "server": []}

        def record(side: str, broker: Any) -> None:
            original = broker.expressionReceived

            def received(expression: Any) -> None:
                for item in expression[1:]:
                    # [b"tuple", [tag, state], ...] holds a keycard.
                    if isinstance(item, list) and item[:1] == [b"tuple"] and item[1:]:
                        copy = item[1]
                        if isinstance(copy, list) and copy[0].startswith(b"twisted_"):
                            sent[side].append(set(json.loads(copy[1])))
                original(expression)

            broker.expressionReceived = received

        record("client", connection.serverBroker)
        record("server", connection.clientBroker)
        answerer = SCRAMAnswerer(USER, PASSWORD, nonce=CLIENT_NONCE)
        login = self.successResultOf(connection.loginWithKeycard([answerer]))
        self.assertEqual(login.keycard.avatarId, USER)
        self.assertEqual(
            sent["client"],
            [{"clientFirst"}, {"id", "requesterName", "clientFinal"}],
        )
        self.assertEqual(
            sent["server"],
            [
                {"id", "requesterName", "bouncerName", "serverFirst"},
                {
                    "id",
                    "state",
                    "avatarId",
                    "requesterName",
                    "bouncerName",
                    "duration",
                    "expires",
                    "serverFinal",
                },
            ],
        )
        # The requester kept the address it saw; it was not sent back.
        assert login.keycard.id is not None
        self.assertEqual(server.bouncer.held[login.keycard.id].address, "192.0.2.7")
