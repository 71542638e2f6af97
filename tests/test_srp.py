"""
Tests for L{twisted_keycard.srp}: SRP-6a keycards.
"""

from __future__ import annotations

from base64 import b64decode, b64encode
from pathlib import Path

import srp as _srp
from twisted.cred import strcred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_keycard import IAnswerer, IChallenger, KeycardRefused, KeycardState
from twisted_keycard.error import ProtocolError, ServerAuthenticationFailed
from twisted_keycard.scram import SCRAMExchange, SCRAMKeycard, SCRAMVerifiers
from twisted_keycard.srp import (
    GROUP_BYTES,
    PREFIX,
    SCRYPT_PREFIX,
    ScryptKDF,
    SRPAnswerer,
    SRPExchange,
    SRPKeycard,
    SRPVerifier,
    SRPVerifiers,
    readVerifiers,
)
from twisted_keycard.testing import KeycardTestServer

from ._realm import AvatarRealm
from ._threads import inline

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


#: A cheap cost, so that tests of the format run fast.
CHEAP = ScryptKDF.generate(n=2**10, r=8, p=1)


def legacyLine(username: str, password: str) -> str:
    """
    A verifier line as versions without scrypt wrote it.
    """
    salt, verifier = _srp.create_salted_verification_key(
        username, password, hash_alg=_srp.SHA256, ng_type=_srp.NG_2048, salt_len=16
    )
    return f"{PREFIX}${b64encode(salt).decode()}${b64encode(verifier).decode()}"


class SRPScryptTests(SynchronousTestCase):
    """
    The password goes through scrypt before SRP's x; the challenge tells the
    client the cost and salt; older verifiers still work.
    """

    def challenge(self, checker: SRPVerifiers, answerer: SRPAnswerer) -> SRPKeycard:
        keycard = answerer.start()
        assert isinstance(keycard, SRPKeycard)
        exchange = self.successResultOf(checker.prime(keycard))
        exchange.challenge(keycard)
        return keycard

    def login(self, checker: SRPVerifiers, password: str) -> str:
        server = KeycardTestServer.build([checker], AvatarRealm())
        answerer = SRPAnswerer("alice", password)
        login = self.successResultOf(server.connect().loginWithKeycard([answerer]))
        assert login.keycard.avatarId is not None
        return login.keycard.avatarId

    def test_defaultVerifier(self) -> None:
        """
        New verifiers are of the password's scrypt, with the default cost
        (N=2^15, r=8, p=3) and a 16-byte salt written in the line.
        """
        text = VERIFIER.toString()
        prefix, cost, kdfSalt, salt, _ = text.split("$")
        self.assertEqual((prefix, cost), (SCRYPT_PREFIX, "32768:8:3"))
        self.assertEqual(len(b64decode(kdfSalt)), 16)
        self.assertEqual(len(b64decode(salt)), 16)
        self.assertEqual(SRPVerifier.fromString(text), VERIFIER)
        self.assertNotEqual(
            SRPVerifier.fromPassword("alice", "x").kdf,
            SRPVerifier.fromPassword("alice", "x").kdf,
        )

    def test_verifierIsOfScrypt(self) -> None:
        """
        The verifier is SRP's verifier of the scrypt of the password, not of
        the password: testing a guess against it costs one scrypt.
        """
        verifier = SRPVerifier.fromPassword("alice", "open sesame", CHEAP)
        derived = CHEAP.derive("open sesame")
        user = _srp.User("alice", derived, hash_alg=_srp.SHA256, ng_type=_srp.NG_2048)
        _, A = user.start_authentication()
        server = _srp.Verifier(
            "alice",
            verifier.salt,
            verifier.verifier,
            A,
            hash_alg=_srp.SHA256,
            ng_type=_srp.NG_2048,
        )
        salt, B = server.get_challenge()
        self.assertIsNotNone(server.verify_session(user.process_challenge(salt, B)))
        plain = _srp.User(
            "alice", "open sesame", hash_alg=_srp.SHA256, ng_type=_srp.NG_2048
        )
        _, A = plain.start_authentication()
        server = _srp.Verifier(
            "alice",
            verifier.salt,
            verifier.verifier,
            A,
            hash_alg=_srp.SHA256,
            ng_type=_srp.NG_2048,
        )
        salt, B = server.get_challenge()
        self.assertIsNone(server.verify_session(plain.process_challenge(salt, B)))

    def test_challengeNamesKDF(self) -> None:
        verifier = SRPVerifier.fromPassword("alice", "open sesame", CHEAP)
        checker = SRPVerifiers({"alice": verifier})
        keycard = self.challenge(checker, SRPAnswerer("alice", "open sesame"))
        self.assertEqual(keycard.kdf, CHEAP.toWire())
        self.assertEqual(
            keycard.kdf, f"scrypt:1024:8:1:{b64encode(CHEAP.salt).decode()}"
        )
        self.assertEqual(self.login(checker, "open sesame"), "alice")

    def test_olderVerifier(self) -> None:
        """
        A line without scrypt, as older versions wrote it, still logs in;
        its challenge has no C{kdf}.
        """
        line = legacyLine("alice", "open sesame")
        checker = SRPVerifiers(readVerifiers(f"alice:{line}\n"))
        keycard = self.challenge(checker, SRPAnswerer("alice", "open sesame"))
        self.assertIsNone(keycard.kdf)
        self.assertEqual(self.login(checker, "open sesame"), "alice")
        older = SRPVerifier.withoutKDF("alice", "open sesame")
        self.assertTrue(older.toString().startswith(PREFIX + "$"))
        self.assertEqual(
            self.login(SRPVerifiers({"alice": older}), "open sesame"), "alice"
        )

    def test_mockShowsTheFilesCost(self) -> None:
        """
        An unknown user's challenge names the cost most verifiers of the
        file have, a salt of the same length, stable per user name; in a
        file of older verifiers, no derivation at all.
        """
        checker = SRPVerifiers(
            {"alice": SRPVerifier.fromPassword("alice", "a", CHEAP)}, mockKey=b"k" * 32
        )
        real = self.challenge(checker, SRPAnswerer("alice", "wrong"))
        mock = self.challenge(checker, SRPAnswerer("mallory", "x"))
        again = self.challenge(checker, SRPAnswerer("mallory", "y"))
        assert real.kdf and mock.kdf
        self.assertEqual(mock.kdf.rsplit(":", 1)[0], "scrypt:1024:8:1")
        self.assertEqual(len(mock.kdf), len(real.kdf))
        self.assertEqual(mock.kdf, again.kdf)
        self.assertNotEqual(
            mock.kdf, self.challenge(checker, SRPAnswerer("eve", "z")).kdf
        )
        older = SRPVerifiers(readVerifiers(f"alice:{legacyLine('alice', 'a')}\n"))
        self.assertIsNone(self.challenge(older, SRPAnswerer("mallory", "x")).kdf)
        empty = SRPVerifiers({})
        mock = self.challenge(empty, SRPAnswerer("mallory", "x"))
        assert mock.kdf
        self.assertTrue(mock.kdf.startswith("scrypt:32768:8:3:"), mock.kdf)

    def test_fileReloadChangesMockCost(self) -> None:
        path = Path(self.mktemp())
        path.write_text(f"alice:{legacyLine('alice', 'a')}\n")
        checker = SRPVerifiers.fromFile(path, clock=Clock(), runInThread=inline)
        self.assertIsNone(self.challenge(checker, SRPAnswerer("mallory", "x")).kdf)
        lines = [
            f"{name}:{SRPVerifier.fromPassword(name, 'a', CHEAP).toString()}\n"
            for name in ("alice", "bob")
        ]
        path.write_text("".join(lines))
        mock = self.challenge(checker, SRPAnswerer("mallory", "x")).kdf
        assert mock is not None
        self.assertTrue(mock.startswith("scrypt:1024:8:1:"), mock)

    def test_mockSecretShared(self) -> None:
        """
        Two checkers of one file given one mock secret (two bouncers, or a
        restart) show the same salts for an unknown name; SCRAM, given the
        same secret, shows another salt (issue 12, item 4).
        """
        path = Path(self.mktemp())
        path.write_text(
            f"alice:{SRPVerifier.fromPassword('alice', 'a', CHEAP).toString()}\n"
        )
        first, restarted = (
            SRPVerifiers.fromFile(path, clock=Clock(), runInThread=inline)
            for _ in range(2)
        )

        def salts(checker: SRPVerifiers) -> tuple[str | None, str | None]:
            keycard = self.challenge(checker, SRPAnswerer("mallory", "x"))
            return keycard.salt, keycard.kdf

        self.assertNotEqual(salts(first), salts(restarted))
        for checker in (first, restarted):
            checker.setMockSecret(b"s" * 32)
        self.assertEqual(salts(first), salts(restarted))
        salt, kdf = salts(first)
        assert kdf is not None
        self.assertEqual(kdf.rsplit(":", 1)[0], "scrypt:1024:8:1")
        scram = SCRAMVerifiers({}, mockKey=b"s" * 32)
        keycard = SCRAMKeycard(clientFirst="n,,n=mallory,r=abc")
        exchange = self.successResultOf(scram.prime(keycard))
        assert isinstance(exchange, SCRAMExchange)
        self.assertNotEqual(b64encode(exchange.serverFirst.salt).decode(), salt)
        self.assertRaises(ValueError, first.setMockSecret, b"short")

    def test_sameWorkForEveryName(self) -> None:
        """
        The mock verifier is made for a known name too, so that priming costs
        the same for every name (issue 12, item 6).
        """
        checker = SRPVerifiers({"alice": SRPVerifier.fromPassword("alice", "a", CHEAP)})
        made: list[str] = []
        mock = checker._mock

        def counted(username: str) -> SRPVerifier:
            made.append(username)
            return mock(username)

        self.patch(checker, "_mock", counted)
        self.challenge(checker, SRPAnswerer("alice", "x"))
        self.challenge(checker, SRPAnswerer("mallory", "x"))
        self.assertEqual(made, ["alice", "mallory"])

    def test_clientBoundsKDF(self) -> None:
        """
        The client refuses a derivation it does not know or whose cost is
        out of bounds, before spending anything on it.
        """
        checker = SRPVerifiers({"alice": SRPVerifier.fromPassword("alice", "a", CHEAP)})
        salt = b64encode(bytes(16)).decode()
        for kdf in [
            f"scrypt:{2**30}:8:1:{salt}",
            f"scrypt:1000:8:1:{salt}",
            f"scrypt:{2**20}:32:16:{salt}",
            "scrypt:1024:8:1:AA",
            f"scrypt:1024:8:{salt}",
            f"argon2:1024:8:1:{salt}",
            "scrypt:1024:8:1:!!!!",
        ]:
            answerer = SRPAnswerer("alice", "a")
            keycard = self.challenge(checker, answerer)
            keycard.kdf = kdf
            self.assertRaises(ProtocolError, answerer.answer, keycard)

    def test_badLines(self) -> None:
        good = SRPVerifier.fromPassword("alice", "a", CHEAP).toString()
        prefix, cost, kdfSalt, salt, verifier = good.split("$")
        for bad in [
            f"{prefix}${cost}${kdfSalt}${salt}",
            f"{prefix}$1024:8${kdfSalt}${salt}${verifier}",
            f"{prefix}$1023:8:1${kdfSalt}${salt}${verifier}",
            f"{prefix}${cost}$!${salt}${verifier}",
            f"{PREFIX}${cost}${kdfSalt}${salt}${verifier}",
            f"{SCRYPT_PREFIX}${salt}${verifier}",
        ]:
            self.assertRaises(ValueError, SRPVerifier.fromString, bad)
