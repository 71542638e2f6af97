"""
Tests for the SCRAM-SHA-256 exchange between L{SCRAMAnswerer} and
L{SCRAMVerifiers}: the RFC 7677 vector on both sides, success, every
refusal, and the keycard's fields on the wire.
"""

from __future__ import annotations

import re
from base64 import b64decode, b64encode
from pathlib import Path
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_keycard.error import (
    InvalidKeycard,
    KeycardRefused,
    ProtocolError,
    ServerAuthenticationFailed,
)
from twisted_keycard.interfaces import IAnswerer, IChallenger
from twisted_keycard.keycard._keycard import Keycard, keycardClassFor
from twisted_keycard.scram import (
    ISCRAMExchange,
    SCRAMAnswerer,
    SCRAMExchange,
    SCRAMKeyCache,
    SCRAMKeycard,
    SCRAMVerifiers,
    ServerFirst,
    Verifier,
)
from twisted_keycard.scram import _server as scramServer
from twisted_keycard.testing import KeycardTestServer

from ._realm import AvatarRealm
from ._threads import inline

# RFC 7677, section 3.
USER, PASSWORD = "user", "pencil"
CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
SERVER_PART = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
SERVER_NONCE = CLIENT_NONCE + SERVER_PART
SALT = b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
CLIENT_FIRST = f"n,,n=user,r={CLIENT_NONCE}"
SERVER_FIRST = f"r={SERVER_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
CLIENT_FINAL = f"c=biws,r={SERVER_NONCE},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
SERVER_FINAL = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

#: The shape of a server-first message from L{SCRAMVerifiers}.
SHAPE = re.compile(r"r=[A-Za-z0-9+/]{24}[A-Za-z0-9+/]{20},s=[A-Za-z0-9+/]{22}==,i=4096")


def _primed(
    checker: SCRAMVerifiers, answerer: SCRAMAnswerer
) -> tuple[SCRAMKeycard, SCRAMExchange]:
    """
    Start an exchange and send its challenge; return the keycard about to
    go back to the client and the bouncer's exchange.
    """
    keycard = answerer.start()
    assert isinstance(keycard, SCRAMKeycard)
    exchange = SynchronousTestCase().successResultOf(checker.prime(keycard))
    assert isinstance(exchange, SCRAMExchange)
    exchange.challenge(keycard)
    return keycard, exchange


class RFC7677Tests(SynchronousTestCase):
    """
    The test vector of RFC 7677, on both sides.
    """

    def test_client(self) -> None:
        answerer = SCRAMAnswerer(USER, PASSWORD, nonce=CLIENT_NONCE)
        self.assertTrue(verifyObject(IAnswerer, answerer))
        keycard = answerer.start()
        assert isinstance(keycard, SCRAMKeycard)
        self.assertEqual(keycard.clientFirst, CLIENT_FIRST)
        keycard.serverFirst = SERVER_FIRST
        self.assertIs(answerer.answer(keycard), keycard)
        self.assertEqual(keycard.clientFinal, CLIENT_FINAL)
        keycard.serverFinal = SERVER_FINAL
        answerer.finish(keycard)

    def test_server(self) -> None:
        checker = SCRAMVerifiers(
            {USER: Verifier.fromPassword(PASSWORD, 4096, SALT)},
            nonceFactory=lambda: SERVER_PART,
        )
        self.assertTrue(verifyObject(IChallenger, checker))
        self.assertTrue(verifyObject(ICredentialsChecker, checker))
        keycard = SCRAMKeycard(clientFirst=CLIENT_FIRST)
        exchange = self.successResultOf(checker.prime(keycard))
        self.assertTrue(verifyObject(ISCRAMExchange, exchange))
        self.assertTrue(exchange.challenge(keycard))
        self.assertEqual(keycard.serverFirst, SERVER_FIRST)
        keycard.clientFinal = CLIENT_FINAL
        exchange.answer(keycard)
        self.assertEqual(self.successResultOf(checker.requestAvatarId(exchange)), USER)
        exchange.conclude(keycard)
        self.assertEqual(keycard.serverFinal, SERVER_FINAL)


class ExchangeTests(SynchronousTestCase):
    """
    Our client against our server.
    """

    def setUp(self) -> None:
        self.checker = SCRAMVerifiers({"alice": Verifier.fromPassword("secret")})

    def login(
        self, username: str, password: str
    ) -> tuple[SCRAMKeycard, SCRAMExchange, SCRAMAnswerer]:
        answerer = SCRAMAnswerer(username, password)
        keycard, exchange = _primed(self.checker, answerer)
        answerer.answer(keycard)
        exchange.answer(keycard)
        return keycard, exchange, answerer

    def test_interfaces(self) -> None:
        self.assertTrue(verifyObject(IChallenger, self.checker))
        self.assertTrue(verifyObject(ICredentialsChecker, self.checker))
        self.assertEqual(self.checker.credentialInterfaces, (ISCRAMExchange,))
        self.assertEqual(self.checker.keycardClasses, (SCRAMKeycard,))
        self.assertTrue(verifyObject(IAnswerer, SCRAMAnswerer("a", "b")))
        self.assertIs(SCRAMAnswerer.keycardClass, SCRAMKeycard)

    def test_utf8Bytes(self) -> None:
        """
        A user name and password given as UTF-8 bytes (as twisted.cred's
        C{UsernamePassword} holds them) log in as the same text does.
        """
        checker = SCRAMVerifiers({"zoë": Verifier.fromPassword("sécret")})
        answerer = SCRAMAnswerer("zoë".encode(), "sécret".encode())
        self.assertEqual(answerer.username, "zoë")
        keycard, exchange = _primed(checker, answerer)
        answerer.answer(keycard)
        exchange.answer(keycard)
        self.assertEqual(self.successResultOf(checker.requestAvatarId(exchange)), "zoë")

    def test_notUTF8(self) -> None:
        """
        Bytes that are not UTF-8, or neither text nor bytes, are refused by
        the constructor, with a message that does not repeat them.
        """
        for username, password in [
            (b"\xffalice", "pw"),
            ("alice", b"\xffpw"),
            ("alice", 42),
        ]:
            with self.assertRaises(ValueError) as caught:
                SCRAMAnswerer(username, password)  # type: ignore[arg-type]
            self.assertNotIn("xff", str(caught.exception))

    def test_success(self) -> None:
        keycard, exchange, answerer = self.login("alice", "secret")
        self.assertTrue(verifyObject(ISCRAMExchange, exchange))
        self.assertEqual(
            self.successResultOf(self.checker.requestAvatarId(exchange)), "alice"
        )
        exchange.conclude(keycard)
        assert keycard.serverFinal is not None
        self.assertTrue(keycard.serverFinal.startswith("v="))
        answerer.finish(keycard)

    def test_nonces(self) -> None:
        """
        The client nonce is 18 random bytes, new each time; the server adds
        15 more.
        """
        answerer = SCRAMAnswerer("alice", "secret")
        keycard, exchange = _primed(self.checker, answerer)
        again, _ = _primed(self.checker, answerer)
        assert keycard.clientFirst and again.clientFirst
        self.assertNotEqual(keycard.clientFirst, again.clientFirst)
        nonce = keycard.clientFirst.split(",r=")[1]
        self.assertEqual(len(b64decode(nonce)), 18)
        serverNonce = exchange.serverFirst.nonce
        self.assertTrue(serverNonce.startswith(nonce))
        self.assertEqual(len(b64decode(serverNonce[len(nonce) :])), 15)

    def test_randomBytesInjected(self) -> None:
        """
        The server's nonce comes from the C{randomBytes} it is given.
        """
        checker = SCRAMVerifiers({}, randomBytes=lambda n: b"\x00" * n)
        exchange = self.successResultOf(
            checker.prime(SCRAMKeycard(clientFirst="n,,n=u,r=abc"))
        )
        assert isinstance(exchange, SCRAMExchange)
        self.assertEqual(exchange.serverFirst.nonce, "abc" + "A" * 20)

    def test_keycardHasNoPassword(self) -> None:
        keycard, exchange, _ = self.login("alice", "hunter2-secret")
        self.failureResultOf(self.checker.requestAvatarId(exchange), KeycardRefused)
        self.assertNotIn("hunter2", repr(keycard))
        self.assertNotIn("hunter2", repr(keycard.getStateToCopy()))

    def test_wrongPassword(self) -> None:
        _, exchange, _ = self.login("alice", "wrong")
        failure = self.failureResultOf(
            self.checker.requestAvatarId(exchange), KeycardRefused
        )
        self.assertEqual(str(failure.value), KeycardRefused.MESSAGE)

    def test_unknownUserLooksTheSame(self) -> None:
        """
        An unknown user gets a challenge of the same shape, salt length and
        iteration count as a real one, the same salt each time, and the same
        refusal as a wrong password.
        """
        realKeycard, real, _ = self.login("alice", "wrong")
        mockKeycard, mock, _ = self.login("mallory", "wrong")
        again, _, _ = self.login("mallory", "other")
        other, _, _ = self.login("trudy", "other")
        for keycard in [realKeycard, mockKeycard]:
            assert keycard.serverFirst is not None
            self.assertRegex(keycard.serverFirst, SHAPE)
        realFirst = ServerFirst.parse(realKeycard.serverFirst)
        mockFirst = ServerFirst.parse(mockKeycard.serverFirst)
        self.assertEqual(len(realFirst.salt), len(mockFirst.salt))
        self.assertEqual(realFirst.iterations, mockFirst.iterations)
        self.assertEqual(len(realFirst.nonce), len(mockFirst.nonce))
        self.assertEqual(ServerFirst.parse(again.serverFirst).salt, mockFirst.salt)
        self.assertNotEqual(ServerFirst.parse(other.serverFirst).salt, mockFirst.salt)
        refusals = [
            self.failureResultOf(self.checker.requestAvatarId(e), KeycardRefused)
            for e in [real, mock]
        ]
        self.assertEqual(refusals[0].value.args, refusals[1].value.args)
        self.assertEqual(type(refusals[0].value), type(refusals[1].value))

    def test_mockSaltFromKey(self) -> None:
        """
        Mock salts are stable for one C{mockKey} and differ between keys.
        """

        def salt(key: bytes) -> bytes:
            checker = SCRAMVerifiers({}, mockKey=key)
            exchange = self.successResultOf(
                checker.prime(SCRAMKeycard(clientFirst="n,,n=ghost,r=abc"))
            )
            assert isinstance(exchange, SCRAMExchange)
            return exchange.serverFirst.salt

        self.assertEqual(salt(b"k" * 32), salt(b"k" * 32))
        self.assertNotEqual(salt(b"k" * 32), salt(b"j" * 32))
        self.assertEqual(len(salt(b"k" * 32)), 16)

    def test_mockIterations(self) -> None:
        """
        A mock exchange uses the checker's C{iterations} when given, whatever
        the verifiers have.
        """
        checker = SCRAMVerifiers(
            {"alice": Verifier.fromPassword("x", 4096)}, iterations=10000
        )
        answerer = SCRAMAnswerer("ghost", "x", maxIterations=10000)
        keycard, _ = _primed(checker, answerer)
        self.assertEqual(ServerFirst.parse(keycard.serverFirst).iterations, 10000)

    def test_mockSecretShared(self) -> None:
        """
        Two checkers given one mock secret (two bouncers sharing a store,
        or one bouncer before and after a restart) show the same salt for
        an unknown name; another secret shows another (issue 12, item 4).
        """

        def salt(checker: SCRAMVerifiers, name: str = "ghost") -> bytes:
            keycard, _ = _primed(checker, SCRAMAnswerer(name, "x"))
            return ServerFirst.parse(keycard.serverFirst).salt

        path = Path(self.mktemp())
        path.write_text(f"alice:{Verifier.fromPassword('x').toString()}\n")
        first = SCRAMVerifiers.fromFile(path, clock=Clock(), runInThread=inline)
        restarted = SCRAMVerifiers.fromFile(path, clock=Clock(), runInThread=inline)
        self.assertNotEqual(salt(first), salt(restarted))
        for checker in (first, restarted):
            checker.setMockSecret(b"s" * 32)
        self.assertEqual(salt(first), salt(restarted))
        self.assertEqual(salt(first), salt(SCRAMVerifiers({}, mockKey=b"s" * 32)))
        self.assertNotEqual(salt(first), salt(first, "trudy"))
        restarted.setMockSecret(b"t" * 32)
        self.assertNotEqual(salt(first), salt(restarted))
        self.assertRaises(ValueError, first.setMockSecret, b"short")

    def test_mockFollowsTheFile(self) -> None:
        """
        A mock exchange shows the iteration count and salt length most
        verifiers of the file have (an imported PostgreSQL verifier with
        600,000 iterations does not stand out), and follows the file when
        it changes.
        """

        def verifier(iterations: int, saltLength: int) -> str:
            # Made from random keys: no PBKDF2 of 600,000 iterations.
            return Verifier(
                iterations, b"s" * saltLength, b"k" * 32, b"v" * 32
            ).toString()

        path = Path(self.mktemp())
        path.write_text(
            f"alice:{verifier(600_000, 24)}\n"
            f"bob:{verifier(600_000, 24)}\n"
            f"carol:{verifier(4096, 16)}\n"
        )
        checker = SCRAMVerifiers.fromFile(path, clock=Clock(), runInThread=inline)

        def mock() -> ServerFirst:
            keycard = SCRAMKeycard(clientFirst="n,,n=ghost,r=abc")
            exchange = self.successResultOf(checker.prime(keycard))
            assert isinstance(exchange, SCRAMExchange)
            self.assertFalse(exchange.known)
            return exchange.serverFirst

        self.assertEqual((mock().iterations, len(mock().salt)), (600_000, 24))
        path.write_text(f"carol:{verifier(4096, 16)}\n# changed\n")
        self.assertEqual((mock().iterations, len(mock().salt)), (4096, 16))

    def test_sameWorkForEveryName(self) -> None:
        """
        The mock salt is made for a known name too, so that priming costs
        the same for every name (issue 12, item 6).
        """
        made: list[str] = []
        mockBytes = scramServer.mockBytes  # type: ignore[attr-defined]

        def counted(key: bytes, username: str, length: int) -> bytes:
            made.append(username)
            return mockBytes(key, username, length)

        self.patch(scramServer, "mockBytes", counted)
        _, known, _ = self.login("alice", "wrong")
        _, unknown, _ = self.login("mallory", "wrong")
        self.assertEqual(made, ["alice", "mallory"])
        self.assertTrue(known.known)
        self.assertFalse(unknown.known)

    def test_unknownUserRightMockKeysStillRefused(self) -> None:
        """
        Even a proof that matches the mock exchange's keys is refused.
        """
        checker = SCRAMVerifiers({})
        answerer = SCRAMAnswerer("ghost", "x")
        keycard, exchange = _primed(checker, answerer)
        exchange.verifier = Verifier.fromPassword("x", 4096, exchange.verifier.salt)
        answerer.answer(keycard)
        exchange.answer(keycard)
        self.failureResultOf(checker.requestAvatarId(exchange), KeycardRefused)

    def test_finalForAnotherExchange(self) -> None:
        """
        A client-final message made for one exchange is refused by another.
        """
        keycard, _, _ = self.login("alice", "secret")
        other, exchange = _primed(self.checker, SCRAMAnswerer("alice", "secret"))
        other.clientFinal = keycard.clientFinal
        self.assertRaises(ProtocolError, exchange.answer, other)

    def test_serverUsesItsOwnMessages(self) -> None:
        """
        The server reads only C{clientFinal}: a changed C{clientFirst} or
        C{serverFirst} in the keycard the client sends back changes nothing.
        """
        answerer = SCRAMAnswerer("alice", "secret")
        keycard, exchange = _primed(self.checker, answerer)
        answerer.answer(keycard)
        keycard.clientFirst = "n,,n=admin,r=abc"
        keycard.serverFirst = "r=abcdef,s=QUFBQQ==,i=4096"
        exchange.answer(keycard)
        self.assertEqual(
            self.successResultOf(self.checker.requestAvatarId(exchange)), "alice"
        )

    def test_tamperedChannelBinding(self) -> None:
        answerer = SCRAMAnswerer("alice", "secret")
        keycard, exchange = _primed(self.checker, answerer)
        answerer.answer(keycard)
        assert keycard.clientFinal
        keycard.clientFinal = keycard.clientFinal.replace("c=biws", "c=eSws")
        self.assertRaises(ProtocolError, exchange.answer, keycard)

    def test_tamperedProof(self) -> None:
        answerer = SCRAMAnswerer("alice", "secret")
        keycard, exchange = _primed(self.checker, answerer)
        answerer.answer(keycard)
        assert keycard.clientFinal
        head, proof = keycard.clientFinal.split(",p=")
        raw = bytearray(b64decode(proof))
        raw[0] ^= 1
        keycard.clientFinal = f"{head},p={b64encode(bytes(raw)).decode()}"
        exchange.answer(keycard)
        self.failureResultOf(self.checker.requestAvatarId(exchange), KeycardRefused)

    def test_tamperedServerNonce(self) -> None:
        """
        A server-first message whose nonce was changed is refused: by the
        client if it no longer extends its nonce, else by the server.
        """
        answerer = SCRAMAnswerer("alice", "secret")
        keycard, exchange = _primed(self.checker, answerer)
        first = ServerFirst.parse(keycard.serverFirst)
        assert keycard.clientFirst is not None
        client = first.nonce[: len(keycard.clientFirst.split(",r=")[1])]
        for nonce in ["!" + first.nonce[1:], client]:
            keycard.serverFirst = ServerFirst(nonce, first.salt, 4096).format()
            self.assertRaises(ProtocolError, answerer.answer, keycard)
        keycard.serverFirst = ServerFirst(client + "x", first.salt, 4096).format()
        answerer.answer(keycard)
        self.assertRaises(ProtocolError, exchange.answer, keycard)

    def test_tamperedSalt(self) -> None:
        """
        A server-first message whose salt was changed gives a proof the
        server refuses.
        """
        answerer = SCRAMAnswerer("alice", "secret")
        keycard, exchange = _primed(self.checker, answerer)
        first = ServerFirst.parse(keycard.serverFirst)
        keycard.serverFirst = ServerFirst(first.nonce, b"x" * 16, 4096).format()
        answerer.answer(keycard)
        exchange.answer(keycard)
        self.failureResultOf(self.checker.requestAvatarId(exchange), KeycardRefused)

    def test_malformedAnswers(self) -> None:
        for final in [None, "", "c=biws", "c=biws,r=abc,p=!!", "p=AAAA,c=biws,r=x"]:
            answerer = SCRAMAnswerer("alice", "secret")
            keycard, exchange = _primed(self.checker, answerer)
            keycard.clientFinal = final
            self.assertRaises(ProtocolError, exchange.answer, keycard)

    def test_notSCRAMKeycard(self) -> None:
        answerer = SCRAMAnswerer("alice", "secret")
        _, exchange = _primed(self.checker, answerer)
        self.failureResultOf(self.checker.prime(Keycard()), ProtocolError)
        self.assertRaises(ProtocolError, exchange.answer, Keycard())
        self.assertRaises(ProtocolError, answerer.answer, Keycard())
        self.failureResultOf(self.checker.requestAvatarId(object()), KeycardRefused)

    def test_malformedClientFirst(self) -> None:
        for first in [
            None,
            "",
            "p=tls-unique,,n=alice,r=abc",
            "n,,n=alice,r=abc,m=x",
            "n,,n=al=ice,r=abc",
        ]:
            keycard = SCRAMKeycard(clientFirst=first)
            self.failureResultOf(self.checker.prime(keycard), ProtocolError)

    def test_clientNonceTooLongForServer(self) -> None:
        """
        A client nonce that leaves no room for the server's part within the
        nonce length limit is refused.
        """
        keycard = SCRAMKeycard(clientFirst="n,,n=alice,r=" + "x" * 250)
        self.failureResultOf(self.checker.prime(keycard), ProtocolError)


class AnswererTests(SynchronousTestCase):
    """
    What the client refuses.
    """

    def setUp(self) -> None:
        self.checker = SCRAMVerifiers({"alice": Verifier.fromPassword("secret")})

    def finished(self, answerer: SCRAMAnswerer) -> tuple[SCRAMKeycard, SCRAMExchange]:
        keycard, exchange = _primed(self.checker, answerer)
        answerer.answer(keycard)
        exchange.answer(keycard)
        self.successResultOf(self.checker.requestAvatarId(exchange))
        exchange.conclude(keycard)
        return keycard, exchange

    def test_serverSignatureChecked(self) -> None:
        """
        A missing, wrong or malformed signature, or an error, is refused.
        """
        bad = "v=" + b64encode(b"\x00" * 32).decode()
        for final in [None, bad, "e=other-error", "v=!!", "nonsense"]:
            answerer = SCRAMAnswerer("alice", "secret")
            keycard, _ = self.finished(answerer)
            keycard.serverFinal = final
            self.assertRaises(ServerAuthenticationFailed, answerer.finish, keycard)

    def test_signatureOfAnotherExchange(self) -> None:
        one = SCRAMAnswerer("alice", "secret")
        first, _ = self.finished(one)
        two = SCRAMAnswerer("alice", "secret")
        second, _ = self.finished(two)
        second.serverFinal = first.serverFinal
        self.assertRaises(ServerAuthenticationFailed, two.finish, second)

    def test_finishOnce(self) -> None:
        answerer = SCRAMAnswerer("alice", "secret")
        keycard, _ = self.finished(answerer)
        answerer.finish(keycard)
        self.assertRaises(ServerAuthenticationFailed, answerer.finish, keycard)

    def test_finishWithoutExchange(self) -> None:
        answerer = SCRAMAnswerer("a", "b")
        self.assertRaises(ServerAuthenticationFailed, answerer.finish, SCRAMKeycard())
        answerer.start()
        self.assertRaises(ServerAuthenticationFailed, answerer.finish, SCRAMKeycard())

    def test_absurdIterations(self) -> None:
        """
        Iteration counts outside the bounds are refused before any work.
        """
        for iterations in [1, 4095, 1_000_001, 9_999_999_999]:
            answerer = SCRAMAnswerer("alice", "secret")
            keycard = answerer.start()
            assert keycard.clientFirst
            nonce = keycard.clientFirst.split(",r=")[1] + "server"
            keycard.serverFirst = ServerFirst(nonce, b"s" * 16, iterations).format()
            with self.assertRaises(ProtocolError) as caught:
                answerer.answer(keycard)
            self.assertIn("iteration count", str(caught.exception))

    def test_iterationBounds(self) -> None:
        answerer = SCRAMAnswerer("alice", "secret", minIterations=1, maxIterations=2)
        keycard = answerer.start()
        assert keycard.clientFirst
        nonce = keycard.clientFirst.split(",r=")[1] + "server"
        keycard.serverFirst = ServerFirst(nonce, b"s" * 16, 2).format()
        answerer.answer(keycard)
        self.assertIsNotNone(keycard.clientFinal)

    def test_answerOnce(self) -> None:
        answerer = SCRAMAnswerer("alice", "secret")
        self.assertRaises(ProtocolError, answerer.answer, SCRAMKeycard())
        keycard, _ = _primed(self.checker, answerer)
        answerer.answer(keycard)
        self.assertRaises(ProtocolError, answerer.answer, keycard)

    def test_malformedChallenge(self) -> None:
        for first in [None, "", "r=abc,s=QUFBQQ==", "e=other-error"]:
            answerer = SCRAMAnswerer("alice", "secret")
            keycard = answerer.start()
            assert isinstance(keycard, SCRAMKeycard)
            keycard.serverFirst = first
            self.assertRaises(ProtocolError, answerer.answer, keycard)

    def test_escapedName(self) -> None:
        """
        A user name with C{,} and C{=} is escaped, and logs in.
        """
        checker = SCRAMVerifiers({"a,b=c": Verifier.fromPassword("p")})
        answerer = SCRAMAnswerer("a,b=c", "p")
        keycard, exchange = _primed(checker, answerer)
        self.assertTrue(keycard.clientFirst and "n=a=2Cb=3Dc," in keycard.clientFirst)
        answerer.answer(keycard)
        exchange.answer(keycard)
        self.assertEqual(
            self.successResultOf(checker.requestAvatarId(exchange)), "a,b=c"
        )

    def test_badUsernameOrNonce(self) -> None:
        for name in ["", "a\x00b", "x" * 257]:
            self.assertRaises(ValueError, SCRAMAnswerer, name, "p")
        for nonce in ["", "a,b", "a b"]:
            self.assertRaises(ValueError, SCRAMAnswerer, "a", "p", nonce=nonce)

    def test_passwordNotInRepr(self) -> None:
        answerer = SCRAMAnswerer("alice", "hunter2")
        self.assertNotIn("hunter2", repr(answerer))
        self.assertIn("alice", repr(answerer))

    def test_keyCache(self) -> None:
        """
        Answerers sharing a key cache derive the keys once per salt.
        """
        cache = SCRAMKeyCache()
        for _ in range(3):
            answerer = SCRAMAnswerer("alice", "secret", cache=cache)
            keycard, _ = self.finished(answerer)
            answerer.finish(keycard)
        self.assertEqual(repr(cache), "<SCRAMKeyCache of 1>")


class KeycardTests(SynchronousTestCase):
    """
    The SCRAM keycard on the wire.
    """

    def test_registered(self) -> None:
        self.assertEqual(SCRAMKeycard.keycardType, "twisted_keycard.scram-sha-256")
        self.assertIs(keycardClassFor("twisted_keycard.scram-sha-256"), SCRAMKeycard)
        fields = SCRAMKeycard.wireFields()
        for name in ["clientFirst", "serverFirst", "clientFinal", "serverFinal"]:
            self.assertIs(fields[name].kind, str)
            self.assertEqual(fields[name].maxLength, 1024)
            self.assertFalse(fields[name].secret)

    def test_copyRoundTrip(self) -> None:
        keycard = SCRAMKeycard(clientFirst=CLIENT_FIRST, serverFirst=SERVER_FIRST)
        received = SCRAMKeycard()
        received.setCopyableState(keycard.getStateToCopy())
        self.assertEqual(received.clientFirst, CLIENT_FIRST)
        self.assertEqual(received.serverFirst, SERVER_FIRST)
        self.assertIsNone(received.clientFinal)

    def test_oversizedField(self) -> None:
        for name in ["clientFirst", "serverFirst", "clientFinal", "serverFinal"]:
            keycard = SCRAMKeycard()
            self.assertRaises(
                InvalidKeycard, keycard.setCopyableState, {name: "x" * 1025}
            )
            self.assertIsNone(getattr(keycard, name))

    def test_wrongType(self) -> None:
        keycard = SCRAMKeycard()
        self.assertRaises(
            InvalidKeycard, keycard.setCopyableState, {"clientFirst": b"n,,"}
        )

    def test_extraField(self) -> None:
        """
        A field the class does not declare is refused, and the keycard is
        left as it was.
        """
        keycard = SCRAMKeycard(clientFirst=CLIENT_FIRST)
        names = list(SCRAMKeycard.wireFields())
        before = [getattr(keycard, name) for name in names]
        self.assertRaises(
            InvalidKeycard,
            keycard.setCopyableState,
            {"clientFirst": "n,,n=eve,r=x", "password": "pencil"},
        )
        self.assertEqual([getattr(keycard, name) for name in names], before)
        self.assertEqual(keycard.clientFirst, CLIENT_FIRST)


class WireTests(SynchronousTestCase):
    """
    What a SCRAM login puts on the wire (keycard protocol 2): each message
    carries only the parts of the RFC 5802 messages the other side cannot
    rebuild (docs/protocol.rst, "A worked example"), with RFC 7677's
    example exchange.
    """

    def record(self, server: KeycardTestServer) -> list[tuple[Any, ...]]:
        """
        Record each call the client makes on the root, and each answer.
        """
        seen: list[tuple[Any, ...]] = []
        root = server.root
        for name in ("login", "answer"):
            original = getattr(root, name)

            def call(*args: Any, original: Any = original, name: str = name) -> Any:
                seen.append((name, *args[1:]))

                def answered(result: Any) -> Any:
                    seen.append(result)
                    return result

                return maybeDeferred(original, *args).addCallback(answered)

            self.patch(root, name, call)
        return seen

    def test_messagesOnTheWire(self) -> None:
        verifier = Verifier.fromPassword(PASSWORD, 4096, SALT)
        checker = SCRAMVerifiers({USER: verifier}, nonceFactory=lambda: SERVER_PART)
        server = KeycardTestServer.build([checker], AvatarRealm(), requesterName="chat")
        connection = server.connect(clientHost="192.0.2.7")
        seen = self.record(server)
        cache = SCRAMKeyCache()
        answerer = SCRAMAnswerer(USER, PASSWORD, nonce=CLIENT_NONCE, cache=cache)
        perspective = self.successResultOf(connection.login([answerer]))
        proof = b64decode(CLIENT_FINAL.rpartition("p=")[2])
        signature = b64decode(SERVER_FINAL[2:])
        self.assertEqual(
            seen,
            [
                ("login", b"scram-sha-256", 0, None, (CLIENT_FIRST.encode(),)),
                (b"challenge", 1, SERVER_PART.encode(), SALT, 4096),
                ("answer", 1, (proof,)),
                (b"logged_in", seen[3][1], signature),
            ],
        )
        self.assertIsNotNone(perspective)
        # The address the requester saw is kept on its side, never sent.
        [record] = server.bouncer.held.values()
        self.assertEqual(record.address, "192.0.2.7")

    def test_knownSaltNotSentAgain(self) -> None:
        """
        A client that names the salt and iteration count it derived its
        keys with last gets neither again if they are still the user's;
        asked for details, it gets them after the proof.
        """
        verifier = Verifier.fromPassword(PASSWORD, 4096, SALT)
        checker = SCRAMVerifiers({USER: verifier}, nonceFactory=lambda: SERVER_PART)
        server = KeycardTestServer.build([checker], AvatarRealm(), requesterName="chat")
        connection = server.connect()
        cache = SCRAMKeyCache()
        self.successResultOf(
            connection.login([SCRAMAnswerer(USER, PASSWORD, cache=cache)])
        )
        seen = self.record(server)
        answerer = SCRAMAnswerer(USER, PASSWORD, nonce=CLIENT_NONCE, cache=cache)
        login = self.successResultOf(connection.loginWithKeycard([answerer]))
        first = (
            "login",
            b"scram-sha-256",
            3,
            None,
            (CLIENT_FIRST.encode(), SALT, 4096),
        )
        self.assertEqual(seen[:2], [first, (b"challenge", 2, SERVER_PART.encode())])
        keycard = login.keycard
        assert keycard.id is not None and keycard.expires is not None
        details = (
            keycard.id.encode(),
            USER.encode(),
            keycard.expires,
            None,
            b"chat",
            b"bouncer",
        )
        self.assertEqual(seen[3][-1], details)
        self.assertEqual(keycard.avatarId, USER)

    def test_staleSaltSentAgain(self) -> None:
        """
        A salt the client names that is not the user's (the password was
        changed) gets the user's salt and iteration count.
        """
        verifier = Verifier.fromPassword(PASSWORD, 4096, SALT)
        checker = SCRAMVerifiers({USER: verifier}, nonceFactory=lambda: SERVER_PART)
        server = KeycardTestServer.build([checker], AvatarRealm())
        connection = server.connect()
        cache = SCRAMKeyCache()
        cache.keys(PASSWORD, b"an old salt", 8192)
        seen = self.record(server)
        answerer = SCRAMAnswerer(USER, PASSWORD, nonce=CLIENT_NONCE, cache=cache)
        self.successResultOf(connection.login([answerer]))
        self.assertEqual(seen[1], (b"challenge", 1, SERVER_PART.encode(), SALT, 4096))
