"""
Tests for the sshkeys checker's mock keys (L{twisted_keycard.sshkeys._keys}):
every name, known or not, is checked against as many keys of each kind as
the file's largest key list of that kind, and only its own keys count
(issue 12, item 6).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard.sshkeys import (
    PrivateKey,
    SignatureProofCheck,
    SSHExchange,
    SSHKeycard,
    SSHKeys,
    readAuthorizedKeys,
    signWith,
    verifyWith,
)
from twisted_keycard.sshkeys import _keys as sshmockkeys
from twisted_keycard.sshkeys._keys import (
    ED25519,
    KeyKind,
    MockKeys,
    _rsaInRange,
    keyKind,
    mockKeyOf,
)

from ._threads import inline
from .test_sshkeys import openssh

RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ECDSA = ec.generate_private_key(ec.SECP256R1())
ED = [ed25519.Ed25519PrivateKey.generate() for _ in range(3)]


def line(name: str, key: PrivateKey, options: str = "") -> str:
    return f"{name} {options}{openssh(key)[1]}\n"


def kinds(check: SignatureProofCheck) -> Counter[KeyKind]:
    """
    The kinds of key a check verifies a signature with, real or mock.
    """
    return Counter(keyKind(k) for k in [*check.keys, *check.padding])


class MockKeysTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.text = (
            line("alice", RSA)
            + line("bob", ED[0])
            + line("bob", ED[1])
            + line("carol", ECDSA)
            + line("dave", ED[2], 'from="10.0.0.0/8" ')
        )
        self.keys = SSHKeys(readAuthorizedKeys(self.text))

    def check(self, name: str, address: str = "192.0.2.1") -> SignatureProofCheck:
        keycard = SSHKeycard(name=name, address=address)
        exchange = self.successResultOf(self.keys.prime(keycard))
        assert isinstance(exchange, SSHExchange)
        assert isinstance(exchange.check, SignatureProofCheck)
        return exchange.check

    def test_everyNameChecksTheSameKinds(self) -> None:
        """
        A user with one RSA key, one with two Ed25519 keys, one with an
        ECDSA key, one whose key C{from=} leaves out, and an unknown name
        are all checked against one RSA, two Ed25519 and one ECDSA key.
        """
        expected = Counter({("rsa", 2048): 1, ED25519: 2, ("ecdsa", 256): 1})
        for name in ["alice", "bob", "carol", "dave", "mallory"]:
            self.assertEqual(kinds(self.check(name)), expected, name)
        self.assertEqual(len(self.check("mallory").keys), 0)
        self.assertEqual(len(self.check("dave").keys), 0)
        self.assertEqual(len(self.check("dave", "10.1.2.3").keys), 1)
        self.assertEqual(kinds(self.check("dave", "10.1.2.3")), expected)

    def test_preparedWhenRead(self) -> None:
        """
        A login looks nothing up per key: what each name is checked
        against is prepared when the file is read, so a known name (with
        one key or five) takes the same steps as an unknown one.
        """

        def perKey(key: object) -> KeyKind:
            raise AssertionError("a key's kind looked up at login")

        self.patch(sshmockkeys, "keyKind", perKey)
        for name in ["alice", "bob", "mallory"]:
            check = self.check(name)
            self.assertEqual(len(check.keys) + len(check.padding), 4)

    def test_fileReadAgain(self) -> None:
        """
        The counts follow the file when it changes; mock keys of a kind
        seen before are not made again.
        """
        path = Path(self.mktemp())
        path.write_text(line("alice", ED[0]))
        keys = SSHKeys.fromFile(path, clock=Clock(), runInThread=inline)

        def check(name: str) -> SignatureProofCheck:
            exchange = self.successResultOf(keys.prime(SSHKeycard(name=name)))
            assert isinstance(exchange, SSHExchange)
            assert isinstance(exchange.check, SignatureProofCheck)
            return exchange.check

        first = check("mallory")
        self.assertEqual(kinds(first), Counter({ED25519: 1}))
        path.write_text(self.text + "# changed\n")
        second = check("mallory")
        self.assertEqual(kinds(second)[ED25519], 2)
        self.assertEqual(kinds(second)[("rsa", 2048)], 1)
        self.assertIn(first.padding[0], second.padding)

    def test_paddingNeverAccepted(self) -> None:
        """
        A signature that a mock key would verify is refused: only the
        name's own keys count.
        """
        signature = signWith(ED[0], b"context")
        self.assertTrue(
            SignatureProofCheck([ED[0].public_key()]).accepts(b"context", signature)
        )
        padded = SignatureProofCheck([], [ED[0].public_key()])
        self.assertFalse(padded.accepts(b"context", signature))

    def test_emptyFile(self) -> None:
        """
        A file without keys checks one Ed25519 key, the most common kind.
        """
        self.assertEqual(MockKeys.of({}, {}).counts, {ED25519: 1})

    def test_mockKeyKinds(self) -> None:
        for kind in [ED25519, ("ecdsa", 256), ("ecdsa", 384), ("rsa", 3072)]:
            self.assertEqual(keyKind(mockKeyOf(kind)), kind)
        self.assertRaises(ValueError, mockKeyOf, ("ecdsa", 255))


class RSARangeTests(SynchronousTestCase):
    """
    OpenSSL refuses at once an RSA signature not below the modulus; such a
    signature is reduced and checked all the same, so a stranger who knows
    a user's public key cannot tell its check from a mock key's.
    """

    def test_reducedAndRefused(self) -> None:
        public = RSA.public_key()
        modulus = public.public_numbers().n
        size = public.key_size // 8
        # A good signature that still fits its length with the modulus added.
        message, signature = next(
            (m, s)
            for m in (b"context %d" % i for i in range(200))
            if int.from_bytes(s := signWith(RSA, m), "big") + modulus < 256**size
        )
        self.assertEqual(_rsaInRange(public, signature), (True, signature))
        self.assertTrue(verifyWith(public, signature, message))
        shifted = (int.from_bytes(signature, "big") + modulus).to_bytes(size, "big")
        self.assertEqual(_rsaInRange(public, shifted), (False, signature))
        self.assertFalse(verifyWith(public, shifted, message))
