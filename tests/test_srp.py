"""
Tests for L{twisted_keycard.srp}: SRP-6a keycards.
"""

from __future__ import annotations

from base64 import b64decode, b64encode

from twisted.cred import strcred
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_keycard import IAnswerer, IChallenger, KeycardRefused, KeycardState
from twisted_keycard.error import ProtocolError, ServerAuthenticationFailed
from twisted_keycard.srp import (
    GROUP_BYTES,
    SRPAnswerer,
    SRPExchange,
    SRPKeycard,
    SRPVerifier,
    SRPVerifiers,
    readVerifiers,
)
from twisted_keycard.testing import KeycardTestServer

from ._realm import AvatarRealm

VERIFIER = SRPVerifier.fromPassword("alice", "open sesame")


class SRPTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.checker = SRPVerifiers({"alice": VERIFIER})

    def exchange(self, answerer: SRPAnswerer) -> tuple[SRPKeycard, SRPExchange]:
        keycard = answerer.start()
        assert isinstance(keycard, SRPKeycard)
        exchange = self.successResultOf(self.checker.prime(keycard))
        assert isinstance(exchange, SRPExchange)
        exchange.challenge(keycard)
        exchange.answer(answerer.answer(keycard))
        return keycard, exchange

    def test_interfaces(self) -> None:
        self.assertTrue(verifyObject(IChallenger, self.checker))
        self.assertTrue(verifyObject(IAnswerer, SRPAnswerer("a", "b")))

    def test_mutual(self) -> None:
        answerer = SRPAnswerer("alice", "open sesame")
        keycard, exchange = self.exchange(answerer)
        self.assertEqual(
            self.successResultOf(self.checker.requestAvatarId(exchange)), "alice"
        )
        exchange.conclude(keycard)
        answerer.finish(keycard)

    def test_wrongPassword(self) -> None:
        _, exchange = self.exchange(SRPAnswerer("alice", "wrong"))
        self.failureResultOf(self.checker.requestAvatarId(exchange), KeycardRefused)

    def test_unknownLooksTheSame(self) -> None:
        real, realExchange = self.exchange(SRPAnswerer("alice", "wrong"))
        mock, mockExchange = self.exchange(SRPAnswerer("mallory", "x"))
        again, _ = self.exchange(SRPAnswerer("mallory", "y"))
        assert real.salt and mock.salt and real.B and mock.B
        self.assertEqual(len(real.salt), len(mock.salt))
        self.assertEqual(mock.salt, again.salt)
        self.assertEqual(len(real.B), len(mock.B))
        self.assertEqual(len(real.B), len(b64encode(bytes(GROUP_BYTES))))
        one = self.failureResultOf(self.checker.requestAvatarId(realExchange))
        two = self.failureResultOf(self.checker.requestAvatarId(mockExchange))
        self.assertEqual(
            (one.type, one.getErrorMessage()), (two.type, two.getErrorMessage())
        )

    def test_challengePadded(self) -> None:
        """
        B crosses the wire padded to the group's size, so its length is the
        same for every exchange, known user or not.
        """
        exchange = SRPExchange("alice", True, b"s" * 16, None, b"\x01\x02")
        keycard = SRPKeycard(username="alice")
        exchange.challenge(keycard)
        assert keycard.B is not None
        self.assertEqual(b64decode(keycard.B), bytes(GROUP_BYTES - 2) + b"\x01\x02")

    def test_serverProofChecked(self) -> None:
        answerer = SRPAnswerer("alice", "open sesame")
        keycard, exchange = self.exchange(answerer)
        self.successResultOf(self.checker.requestAvatarId(exchange))
        keycard.HAMK = "AAAA"
        self.assertRaises(ServerAuthenticationFailed, answerer.finish, keycard)
        keycard.HAMK = None
        self.assertRaises(ServerAuthenticationFailed, answerer.finish, keycard)

    def test_tamperedChallenge(self) -> None:
        """
        A client answering a changed salt fails.
        """
        answerer = SRPAnswerer("alice", "open sesame")
        keycard = answerer.start()
        assert isinstance(keycard, SRPKeycard)
        exchange = self.successResultOf(self.checker.prime(keycard))
        assert isinstance(exchange, SRPExchange)
        exchange.challenge(keycard)
        keycard.salt = "AAAAAAAAAAAAAAAAAAAAAA=="
        exchange.answer(answerer.answer(keycard))
        self.failureResultOf(self.checker.requestAvatarId(exchange), KeycardRefused)

    def test_invalidA(self) -> None:
        keycard = SRPKeycard(username="alice", A="AAAA")
        self.failureResultOf(self.checker.prime(keycard), ProtocolError)

    def test_verifierFile(self) -> None:
        text = f"# users\nalice:{VERIFIER.toString()}\n"
        self.assertEqual(readVerifiers(text), {"alice": VERIFIER})
        error = self.assertRaises(ValueError, readVerifiers, text + "bob:nonsense\n")
        self.assertIn("line 3", str(error))
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        self.assertIsInstance(strcred.makeChecker(f"srp:{path}"), SRPVerifiers)

    def test_overPB(self) -> None:
        server = KeycardTestServer.build([self.checker], AvatarRealm())
        login = self.successResultOf(
            server.connect().loginWithKeycard([SRPAnswerer("alice", "open sesame")])
        )
        self.assertIs(login.keycard.state, KeycardState.AUTHENTICATED)
        refused = server.connect().login([SRPAnswerer("alice", "nope")])
        self.failureResultOf(refused, KeycardRefused)
