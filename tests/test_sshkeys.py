"""
Tests for L{twisted_keycard.sshkeys}: public-key signature keycards with
Ed25519, ECDSA and RSA keys in OpenSSH formats.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from twisted.cred import strcred
from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_keycard import IAnswerer, IChallenger, KeycardRefused, KeycardState
from twisted_keycard.sshkeys import (
    SK_ED25519,
    PrivateKey,
    SecurityKey,
    SSHAnswerer,
    SSHExchange,
    SSHKeycard,
    SSHKeys,
    context,
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

    def login(
        self,
        options: str,
        address: str | None,
        now: float = 0.0,
        ignore: tuple[str, ...] = (),
    ) -> bool:
        """
        Whether alice logs in from C{address} at time C{now} with a line of
        C{options}.
        """
        clock = Clock()
        clock.advance(now)
        text = f"alice {options} {self.key}\n"
        keys = SSHKeys(readAuthorizedKeys(text, ignore), clock=clock)
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
            (
                'command="/bin/true"',
                "option command cannot be honoured for a keycard login"
                " (sshkeys:FILE:ignore=command takes the line",
            ),
            ('environment="A=b"', "option environment cannot be honoured"),
            ('permitopen="h:22"', "option permitopen cannot be honoured"),
            ("verify-required", "option verify-required cannot be honoured"),
            ("frobnicate", "option frobnicate is not supported here"),
            ('expiry-time="2030"', "option expiry-time: '2030' is not YYYYMMDD"),
            ('expiry-time="20301301"', "is not YYYYMMDD[HHMM[SS]] (local time)"),
            ('from="!gateway,10.0.0.0/8"', "'!gateway' excludes a host name"),
            ('from="a_b"', "'a_b' is not an address, network or host name"),
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

    def test_expiryTime(self) -> None:
        """
        C{expiry-time=} holds until its time (UTC with C{Z}), as OpenSSH's:
        the line logs in up to that second, not after.
        """
        end = 1893456000.0  # 2030-01-01T00:00:00Z
        for text in ["20300101Z", "203001010000Z", "20300101000000z"]:
            option = f'expiry-time="{text}"'
            self.assertTrue(self.login(option, "127.0.0.1", now=end - 60), text)
            self.assertTrue(self.login(option, "127.0.0.1", now=end), text)
            self.assertFalse(self.login(option, "127.0.0.1", now=end + 1), text)
        both = 'from="10.0.0.0/8",expiry-time="20300101Z"'
        self.assertTrue(self.login(both, "10.1.1.1", now=end - 60))
        self.assertFalse(self.login(both, "192.0.2.1", now=end - 60))
        self.assertFalse(self.login(both, "10.1.1.1", now=end + 60))
        # Without Z, local time, as OpenSSH reads it.
        [line] = readAuthorizedKeys(f'a expiry-time="203001021530" {self.key}')["a"]
        local = time.mktime((2030, 1, 2, 15, 30, 0, 0, 0, -1))
        self.assertEqual(line.expires, local)

    def test_hostNames(self) -> None:
        """
        A host-name pattern is never looked up: it matches no client, and
        its line holds for the address patterns beside it.
        """
        mixed = 'from="gateway.example.com,10.0.0.0/8,*.example.org"'
        self.assertTrue(self.login(mixed, "10.1.2.3"))
        self.assertFalse(self.login(mixed, "192.0.2.1"))
        self.assertFalse(self.login('from="localhost"', "127.0.0.1"))
        self.assertFalse(self.login('from="*.example.com"', "127.0.0.1"))
        self.assertFalse(self.login('from="*"', "gateway.example.com"))

    def test_ignoredOptions(self) -> None:
        """
        Options an operator says do not apply to keycard logins are taken
        (C{ignoreOptions}, C{sshkeys:FILE:ignore=...}); the others still
        refuse their line.
        """
        options = 'command="/usr/bin/backup",environment="A=1",environment="B=2"'
        self.assertTrue(
            self.login(options, "127.0.0.1", ignore=("command", "environment"))
        )
        error = self.assertRaises(
            ValueError,
            readAuthorizedKeys,
            f'a command="x",permitopen="h:1" {self.key}',
            ("command",),
        )
        self.assertIn("option permitopen cannot be honoured", str(error))
        for bad in [("no-pty",), ("bogus",)]:
            error = self.assertRaises(ValueError, SSHKeys, {}, ignoreOptions=bad)
            self.assertIn(f"cannot ignore option {bad[0]}: only command,", str(error))
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f'alice command="/bin/backup",no-pty {self.key}\n')
        checker = strcred.makeChecker(f"sshkeys:{path}:ignore=command,permitopen")
        assert isinstance(checker, SSHKeys)
        self.assertEqual(len(checker._keys.current()), 1)
        plain = strcred.makeChecker(f"sshkeys:{path}")
        assert isinstance(plain, SSHKeys)
        self.assertEqual(len(plain._keys.current()), 0)
        for arg, reason in [
            (f"sshkeys:{path}:ignore=", "ignore= needs options"),
            (f"sshkeys:{path}:ignore=no-pty", "cannot ignore option no-pty"),
        ]:
            error = self.assertRaises(ValueError, strcred.makeChecker, arg)
            self.assertIn(reason, str(error))

    def test_weakAndFidoKeys(self) -> None:
        """
        A FIDO security key, a DSA key and an RSA key under 2048 bits
        refuse their line, saying so in words a user knows; the other
        lines hold.
        """
        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
        dss = dsa.generate_private_key(key_size=1024)  # noqa: S505
        skBlob = b"".join(
            len(p).to_bytes(4, "big") + p
            for p in (b"sk-ecdsa-sha2-nistp256@openssh.com", b"nistp256", b"ssh:")
        )
        sk = "sk-ecdsa-sha2-nistp256@openssh.com " + base64.b64encode(skBlob).decode()
        for line, reason in [
            (
                openssh(weak)[1],
                "RSA keys under 2048 bits are refused: this one has 1024",
            ),
            (
                dss.public_key()
                .public_bytes(
                    serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
                )
                .decode(),
                "DSA keys are refused: too weak",
            ),
            (
                sk,
                "sk-ecdsa-sha2-nistp256@openssh.com security keys are not taken"
                " (only sk-ssh-ed25519@openssh.com ones)",
            ),
            (f"no-touch-required {sk}", "security keys are not taken"),
        ]:
            text = f"bob {self.key}\nalice {line}\n"
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
        self.assertIn("line 1: option command cannot be honoured", line)
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


def skLine(key: ed25519.Ed25519PrivateKey, application: bytes = b"ssh:") -> str:
    """
    The C{authorized_keys} line of a security key made in software.
    """
    return f"{SK_ED25519} " + base64.b64encode(skKey(key, application).blob()).decode()


def skKey(key: ed25519.Ed25519PrivateKey, application: bytes = b"ssh:") -> SecurityKey:
    return SecurityKey(key.public_key(), application)


def skSign(
    key: ed25519.Ed25519PrivateKey,
    message: bytes,
    flags: int = 1,
    counter: int = 7,
    application: bytes = b"ssh:",
) -> bytes:
    """
    What a FIDO authenticator (and the agent) gives for C{message}: the
    signature over the authenticator's data, its flags and counter.
    """
    count = counter.to_bytes(4, "big")
    signed = skKey(key, application).signed(flags, count, message)
    return key.sign(signed) + bytes([flags]) + count


class SecurityKeyTests(SynchronousTestCase):
    """
    FIDO security keys (C{sk-ssh-ed25519@openssh.com}), with signatures made
    in software as OpenSSH's PROTOCOL.u2f describes them.
    """

    key = ed25519.Ed25519PrivateKey.generate()

    def login(self, options: str, signature: Callable[[bytes], bytes]) -> bool:
        keys = SSHKeys(readAuthorizedKeys(f"alice {options} {skLine(self.key)}\n"))
        keycard = SSHKeycard(name="alice")
        keycard.id = "kid"
        exchange = self.successResultOf(keys.prime(keycard))
        exchange.challenge(keycard)
        assert keycard.nonce is not None
        message = context("alice", keycard.nonce, "kid", keycard.requesterName)
        keycard.signature = base64.b64encode(signature(message)).decode()
        exchange.answer(keycard)
        result = keys.requestAvatarId(exchange)
        return self.successResultOf(
            result.addCallbacks(lambda _: True, lambda f: not f.trap(KeycardRefused))
        )

    def test_touch(self) -> None:
        """
        A signature of a touched key logs in; without the touch flag it is
        refused, unless the line says C{no-touch-required}.
        """
        self.assertTrue(self.login("", lambda m: skSign(self.key, m)))
        self.assertFalse(self.login("", lambda m: skSign(self.key, m, flags=0)))
        self.assertTrue(
            self.login("no-touch-required", lambda m: skSign(self.key, m, flags=0))
        )

    def test_verifyRequired(self) -> None:
        """
        With C{verify-required} the user-verified flag (a PIN) is needed.
        """
        self.assertFalse(self.login("verify-required", lambda m: skSign(self.key, m)))
        self.assertTrue(
            self.login("verify-required", lambda m: skSign(self.key, m, flags=5))
        )

    def test_tampered(self) -> None:
        """
        The flags, the counter and the application are all signed: change
        one and the signature is refused; so is a plain Ed25519 signature.
        """

        def flipped(m: bytes) -> bytes:
            good = skSign(self.key, m, flags=0)
            return good[:64] + bytes([1]) + good[65:]

        def counted(m: bytes) -> bytes:
            good = skSign(self.key, m)
            return good[:65] + (8).to_bytes(4, "big")

        for signature in [
            flipped,
            counted,
            lambda m: skSign(self.key, m, application=b"ssh:other"),
            self.key.sign,
            lambda m: skSign(self.key, m)[:68],
        ]:
            self.assertFalse(self.login("", signature))

    def test_mockKeys(self) -> None:
        """
        A security key has its own kind: an unknown name is checked against
        a mock security key.
        """
        keys = SSHKeys(readAuthorizedKeys(f"alice {skLine(self.key)}\n"))
        self.assertEqual(keys._mocks.counts, {("sk-ed25519", 256): 1})
