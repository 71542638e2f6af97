"""
Tests for L{twisted_keycard.sshkeys}: public-key signature keycards with
Ed25519, ECDSA and RSA keys in OpenSSH formats.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from twisted.cred import strcred
from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
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
from twisted_keycard.sshkeys._authorizedkeys import splitOptions
from twisted_keycard.testing import KeycardTestServer

from ._realm import AvatarRealm
from ._threads import inline

DATA = Path(__file__).resolve().parent / "data" / "ssh"


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

    def exchangeWith(
        self, answerer: SSHAnswerer, address: str | None = None
    ) -> SSHExchange:
        keycard = answerer.start()
        assert isinstance(keycard, SSHKeycard)
        keycard.id, keycard.requesterName, keycard.address = "kid", "r1", address
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

    def test_bareCertificateRefused(self) -> None:
        """
        A certificate line is not taken as its key (issue 12, item 9: its
        validity, principals and CA were ignored); the error says what to
        write instead.
        """
        certificate = (DATA / "expired-cert.pub").read_text()
        error = self.assertRaises(
            ValueError, readAuthorizedKeys, f"# keys\nalice {certificate}"
        )
        self.assertEqual(
            str(error),
            "line 2: a certificate is not a key: trust its CA with a"
            " cert-authority line",
        )

    def test_strcred(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f"# keys\nalice {openssh(KEYS[0])[1]}\n")
        self.assertIsInstance(strcred.makeChecker(f"sshkeys:{path}"), SSHKeys)


class OptionsTests(SynchronousTestCase):
    """
    OpenSSH options on a keys file's lines.
    """

    key = openssh(KEYS[0])[1]

    def login(self, options: str, address: str | None) -> bool:
        """
        Whether alice logs in from C{address} with a line of C{options}.
        """
        keys = SSHKeys(readAuthorizedKeys(f"alice {options} {self.key}\n"))
        answerer = SSHAnswerer("alice", KEYS[0])
        keycard = answerer.start()
        assert isinstance(keycard, SSHKeycard)
        keycard.id, keycard.address = "kid", address
        exchange = self.successResultOf(keys.prime(keycard))
        exchange.challenge(keycard)
        exchange.answer(answerer.answer(keycard))
        result = keys.requestAvatarId(exchange)
        return self.successResultOf(
            result.addCallbacks(lambda _: True, lambda f: not f.trap(KeycardRefused))
        )

    def test_fromAndNoPty(self) -> None:
        """
        The issue's line is taken (it was refused, with no line number),
        and its C{from=} honoured.
        """
        self.assertTrue(self.login('from="127.0.0.1",no-pty', "127.0.0.1"))
        self.assertFalse(self.login('from="127.0.0.1",no-pty', "127.0.0.2"))
        self.assertFalse(self.login('from="127.0.0.1",no-pty', None))

    def test_fromPatterns(self) -> None:
        """
        Networks, wildcards and negations, IPv4 and IPv6, as OpenSSH
        matches them; a list of negations only matches nothing.
        """
        patterns = 'from="10.0.0.0/8,!10.6.6.6,192.168.1.?,2001:db8::/32,fe80::*"'
        for address, allowed in [
            ("10.1.2.3", True),
            ("::ffff:10.1.2.3", True),
            ("10.6.6.6", False),
            ("192.168.1.7", True),
            ("192.168.1.70", False),
            ("2001:db8::1", True),
            ("2001:db9::1", False),
            ("fe80::1", True),
            ("127.0.0.1", False),
            ("not an address", False),
        ]:
            self.assertEqual(self.login(patterns, address), allowed, address)
        self.assertFalse(self.login('from="!10.6.6.6"', "127.0.0.1"))
        self.assertTrue(self.login('FROM="*"', "127.0.0.1"))

    def test_sessionOptionsIgnored(self) -> None:
        """
        Options that limit an SSH session change nothing here.
        """
        options = (
            "restrict,no-port-forwarding,no-agent-forwarding,no-X11-forwarding,"
            "no-user-rc,no-pty,pty"
        )
        self.assertTrue(self.login(options, "127.0.0.1"))

    def test_refusedOptions(self) -> None:
        """
        Options that cannot be enforced here, host names and malformed
        options make the line bad, with its number and the reason.
        """
        for options, reason in [
            ('command="/bin/true"', "option command is not supported here"),
            ('expiry-time="20300101"', "option expiry-time is not supported here"),
            ('from="*.example.com"', "'*.example.com' is not an address or network"),
            ('from="gateway"', "host names cannot be checked without DNS"),
            ('from="10.0.0.1/8"', "has host bits set"),
            ('from="10.0.0.1', "option from: no closing quote"),
            ("from=10.0.0.1", "its value must be in double quotes"),
            ("from", 'option from needs a value: from="..."'),
            ('no-pty="yes"', "option no-pty takes no value"),
            ("no-pty,no-pty", "option no-pty is given twice"),
            ('principals="alice"', "option principals goes with cert-authority"),
            ("no-pty,", "expected options or a key type after the name"),
        ]:
            text = f"bob {self.key}\nalice {options} {self.key}\n"
            error = self.assertRaises(ValueError, readAuthorizedKeys, text)
            self.assertTrue(str(error).startswith("line 2: "), str(error))
            self.assertIn(reason, str(error))

    def test_quotedValues(self) -> None:
        """
        A quoted value may hold commas, spaces and escaped quotes.
        """
        self.assertEqual(
            splitOptions('a="x, y",b="say \\"hi\\"",c ssh-ed25519 AAAA'),
            ([("a", "x, y"), ("b", 'say "hi"'), ("c", None)], "ssh-ed25519 AAAA"),
        )

    def test_badLineInFile(self) -> None:
        """
        In a keys file, a line with an option not taken is left out and
        logged once, with its number; the other lines hold.
        """
        events: list[LogEvent] = []
        globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, events.append)  # type: ignore[arg-type]
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f'alice command="/bin/sh" {self.key}\nbob {self.key}\n')
        keys = SSHKeys.fromFile(path, clock=Clock(), runInThread=inline)
        self.assertEqual(len(keys._keys), 1)
        [line] = [formatEvent(e) for e in events]
        self.assertIn("line 1: option command is not supported here", line)
        self.assertNotIn(self.key.split()[1], line)


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
