"""
Tests for L{twisted_keycard.sshkeys}: public-key signature keycards with
Ed25519, ECDSA and RSA keys in OpenSSH formats.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from twisted.cred import strcred
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_keycard import IAnswerer, IChallenger, KeycardRefused, KeycardState
from twisted_keycard.sshkeys import (
    PrivateKey,
    SSHAnswerer,
    SSHExchange,
    SSHKeycard,
    SSHKeys,
    loadPrivateKey,
    readAuthorizedKeys,
)
from twisted_keycard.testing import KeycardTestServer

from ._realm import AvatarRealm


def openssh(key: PrivateKey) -> tuple[bytes, str]:
    """
    A private key in OpenSSH's file format, and its authorized_keys line.
    """
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public.decode() + " user@host"


KEYS: list[PrivateKey] = [
    ed25519.Ed25519PrivateKey.generate(),
    ec.generate_private_key(ec.SECP256R1()),
    rsa.generate_private_key(public_exponent=65537, key_size=2048),
]


class SSHKeysTests(SynchronousTestCase):
    def setUp(self) -> None:
        lines = [f"alice {openssh(k)[1]}" for k in KEYS]
        self.keys = SSHKeys(readAuthorizedKeys("\n".join(lines)))

    def exchangeWith(self, answerer: SSHAnswerer) -> SSHExchange:
        keycard = answerer.start()
        assert isinstance(keycard, SSHKeycard)
        keycard.id, keycard.requesterName = "kid", "r1"
        exchange = self.successResultOf(self.keys.prime(keycard))
        assert isinstance(exchange, SSHExchange)
        exchange.challenge(keycard)
        exchange.answer(answerer.answer(keycard))
        return exchange

    def test_interfaces(self) -> None:
        self.assertTrue(verifyObject(IChallenger, self.keys))
        self.assertTrue(verifyObject(IAnswerer, SSHAnswerer("a", KEYS[0])))

    def test_everyKeyType(self) -> None:
        for key in KEYS:
            loaded = loadPrivateKey(openssh(key)[0])
            exchange = self.exchangeWith(SSHAnswerer("alice", loaded))
            self.assertEqual(
                self.successResultOf(self.keys.requestAvatarId(exchange)), "alice"
            )

    def test_wrongKey(self) -> None:
        stranger = ed25519.Ed25519PrivateKey.generate()
        exchange = self.exchangeWith(SSHAnswerer("alice", stranger))
        self.failureResultOf(self.keys.requestAvatarId(exchange), KeycardRefused)

    def test_unknownName(self) -> None:
        exchange = self.exchangeWith(SSHAnswerer("mallory", KEYS[0]))
        failure = self.failureResultOf(
            self.keys.requestAvatarId(exchange), KeycardRefused
        )
        self.assertEqual(failure.getErrorMessage(), KeycardRefused.MESSAGE)

    def test_tamperedNonce(self) -> None:
        answerer = SSHAnswerer("alice", KEYS[0])
        keycard = answerer.start()
        assert isinstance(keycard, SSHKeycard)
        keycard.id = "kid"
        exchange = self.successResultOf(self.keys.prime(keycard))
        assert isinstance(exchange, SSHExchange)
        exchange.challenge(keycard)
        keycard.nonce = "AAAA" + (keycard.nonce or "")[4:]
        exchange.answer(answerer.answer(keycard))
        self.failureResultOf(self.keys.requestAvatarId(exchange), KeycardRefused)

    def test_replay(self) -> None:
        exchange = self.exchangeWith(SSHAnswerer("alice", KEYS[0]))
        self.successResultOf(self.keys.requestAvatarId(exchange))
        other = self.exchangeWith(SSHAnswerer("alice", KEYS[0]))
        other.proof = exchange.proof
        self.failureResultOf(self.keys.requestAvatarId(other), KeycardRefused)

    def test_badFile(self) -> None:
        good = f"alice {openssh(KEYS[0])[1]}"
        # A weak key, generated only to be refused.
        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
        for bad in ["alice", "alice ssh-ed25519 !!!", f"bob {openssh(weak)[1]}"]:
            error = self.assertRaises(
                ValueError, readAuthorizedKeys, f"{good}\n{bad}\n"
            )
            self.assertIn("line 2", str(error))

    def test_strcred(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f"# keys\nalice {openssh(KEYS[0])[1]}\n")
        self.assertIsInstance(strcred.makeChecker(f"sshkeys:{path}"), SSHKeys)


class SSHOverPBTests(SynchronousTestCase):
    def test_login(self) -> None:
        keys = SSHKeys(readAuthorizedKeys(f"alice {openssh(KEYS[0])[1]}"))
        server = KeycardTestServer.build([keys], AvatarRealm())
        login = self.successResultOf(
            server.connect().loginWithKeycard([SSHAnswerer("alice", KEYS[0])])
        )
        self.assertIs(login.keycard.state, KeycardState.AUTHENTICATED)
        self.assertEqual(login.keycard.avatarId, "alice")
        refused = server.connect().login([SSHAnswerer("alice", KEYS[1])])
        self.failureResultOf(refused, KeycardRefused)
