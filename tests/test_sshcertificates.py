"""
Tests for OpenSSH user certificates in L{twisted_keycard.sshkeys}, with keys
and certificates made by the real C{ssh-keygen} (tests/data/ssh, made by
tests/data/make-ssh-certificates.sh).
"""

from __future__ import annotations

from base64 import b64decode, b64encode
from pathlib import Path

from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import KeycardRefused, KeycardState, ProtocolError
from twisted_keycard.sshkeys import (
    SSHAnswerer,
    SSHKeycard,
    SSHKeys,
    loadPrivateKey,
    readAuthorizedKeys,
)
from twisted_keycard.testing import KeycardTestServer

from ._realm import AvatarRealm

DATA = Path(__file__).resolve().parent / "data" / "ssh"
USER = loadPrivateKey((DATA / "user").read_bytes())
USER_ECDSA = loadPrivateKey((DATA / "user-ecdsa").read_bytes())
#: 2025-01-01T00:00:00Z: within the test certificates' 2020-2030.
NOW = 1735689600


def data(name: str) -> str:
    return (DATA / name).read_text().strip()


class CertificateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)  # type: ignore[arg-type]
        self.useLines(f"alice cert-authority {data('ca.pub')}")

    def useLines(self, *lines: str) -> None:
        self.keys = SSHKeys(readAuthorizedKeys("\n".join(lines)), clock=self.clock)

    def login(
        self,
        certificate: str | None,
        name: str = "alice",
        address: str | None = "10.1.2.3",
        key: object = USER,
    ) -> str | None:
        """
        The avatar id a login with C{certificate} gets, or C{None} if it is
        refused.
        """
        cert = None if certificate is None else data(certificate)
        answerer = SSHAnswerer(name, key, cert)  # type: ignore[arg-type]
        keycard = answerer.start()
        assert isinstance(keycard, SSHKeycard)
        keycard.id, keycard.address = "kid", address
        exchange = self.successResultOf(self.keys.prime(keycard))
        exchange.challenge(keycard)
        exchange.answer(answerer.answer(keycard))
        result = self.keys.requestAvatarId(exchange)
        return self.successResultOf(
            result.addErrback(lambda f: f.trap(KeycardRefused) and None)
        )

    def reasons(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def test_good(self) -> None:
        """
        A user certificate signed by the name's CA, naming it, valid now,
        logs in with the certified key's signature.
        """
        self.assertEqual(self.login("good-cert.pub"), "alice")

    def test_refused(self) -> None:
        """
        Each thing wrong with a certificate refuses it, with the one refusal
        of a bad signature; the server's log says what.
        """
        for certificate, reason in [
            ("expired-cert.pub", "expired"),
            ("future-cert.pub", "not valid yet"),
            ("mallory-cert.pub", "no principal allowed here"),
            ("other-ca-cert.pub", "not signed by a CA trusted for this name"),
            ("host-cert.pub", "not a user certificate"),
            ("force-command-cert.pub", "critical option not supported"),
            ("no-principals-cert.pub", "no principal allowed here"),
        ]:
            self.events.clear()
            self.assertIsNone(self.login(certificate), certificate)
            [logged] = self.reasons()
            self.assertEqual(
                logged,
                f"certificate for 'alice' from 10.1.2.3 refused: {reason}",
            )

    def test_validityWindow(self) -> None:
        """
        Validity is checked with the checker's clock, bounds as OpenSSH
        reads them: from C{valid_after}, up to C{valid_before} excluded.
        """
        self.clock.advance(1893456000 - NOW - 1)  # 2030-01-01T00:00:00Z - 1 s
        self.assertEqual(self.login("good-cert.pub"), "alice")
        self.clock.advance(1)
        self.assertIsNone(self.login("good-cert.pub"))

    def test_signatureCheckedForEveryName(self) -> None:
        """
        A certificate's CA signature is checked whether or not the name
        trusts its signer, so that the check costs the same for a name that
        does and one that does not exist (issue 12, item 6).
        """
        kind, blob, *_ = data("good-cert.pub").split()
        raw = bytearray(b64decode(blob))
        raw[-1] ^= 1
        tampered = f"{kind} {b64encode(bytes(raw)).decode()}"
        for name in ["alice", "mallory"]:
            self.events.clear()
            keycard = SSHKeycard(name=name, certificate=tampered, address="10.1.2.3")
            self.successResultOf(self.keys.prime(keycard))
            self.assertEqual(
                self.reasons(),
                [f"certificate for {name!r} from 10.1.2.3 refused: bad CA signature"],
            )

    def test_otherName(self) -> None:
        """
        A CA trusted for one name certifies nothing for another, even a
        name the certificate lists.
        """
        self.useLines(f"bob cert-authority {data('ca.pub')}")
        self.assertIsNone(self.login("good-cert.pub"))
        self.assertIsNone(self.login("good-cert.pub", name="bob"))

    def test_principalsOption(self) -> None:
        """
        With C{principals=}, the certificate must name one of those instead
        of the avatar name.
        """
        ca = data("ca.pub")
        self.useLines(f'ops cert-authority,principals="deploy,admin" {ca}')
        self.assertEqual(self.login("deploy-cert.pub", name="ops"), "ops")
        self.useLines(f'alice cert-authority,principals="deploy" {ca}')
        self.assertIsNone(self.login("good-cert.pub"))

    def test_sourceAddress(self) -> None:
        """
        The C{source-address} critical option is enforced.
        """
        self.assertEqual(self.login("source-address-cert.pub"), "alice")
        self.assertIsNone(self.login("source-address-cert.pub", address="127.0.0.1"))
        self.assertIsNone(self.login("source-address-cert.pub", address=None))

    def test_fromOnAuthority(self) -> None:
        """
        C{from=} on a C{cert-authority} line limits where its certificates
        are taken from.
        """
        self.useLines(f'alice cert-authority,from="10.0.0.0/8" {data("ca.pub")}')
        self.assertEqual(self.login("good-cert.pub"), "alice")
        self.assertIsNone(self.login("good-cert.pub", address="192.0.2.1"))

    def test_rsaAuthorityECDSAKey(self) -> None:
        """
        An RSA CA (rsa-sha2-512 signatures, ssh-keygen's default) certifying
        an ECDSA key.
        """
        self.useLines(f"alice cert-authority {data('rsa-ca.pub')}")
        self.assertEqual(self.login("rsa-ca-cert.pub", key=USER_ECDSA), "alice")

    def test_authorityIsNotAKey(self) -> None:
        """
        A C{cert-authority} line's key does not log in by itself, and a
        certificate is checked only against C{cert-authority} lines, not
        against a line of its own key.
        """
        self.assertIsNone(self.login(None))
        self.useLines(f"alice {data('user.pub')}")
        self.assertEqual(self.login(None), "alice")
        self.assertIsNone(self.login("good-cert.pub"))

    def test_malformed(self) -> None:
        """
        A keycard whose certificate does not parse is refused at once.
        """
        keycard = SSHKeycard(name="alice", certificate=data("user.pub"))
        self.failureResultOf(self.keys.prime(keycard), ProtocolError)

    def test_answererChecksKey(self) -> None:
        """
        The answerer refuses a certificate of another key.
        """
        self.assertRaises(
            ValueError, SSHAnswerer, "alice", USER_ECDSA, data("good-cert.pub")
        )
        self.assertRaises(ValueError, SSHAnswerer, "alice", USER, data("user.pub"))

    def test_overPB(self) -> None:
        """
        The certificate crosses PB in its keycard field.
        """
        server = KeycardTestServer.build([self.keys], AvatarRealm())
        login = self.successResultOf(
            server.connect(clientHost="10.1.2.3").loginWithKeycard(
                [SSHAnswerer("alice", USER, data("good-cert.pub"))]
            )
        )
        self.assertIs(login.keycard.state, KeycardState.AUTHENTICATED)
        self.assertEqual(login.keycard.avatarId, "alice")
        refused = server.connect().login(
            [SSHAnswerer("alice", USER, data("expired-cert.pub"))]
        )
        self.failureResultOf(refused, KeycardRefused)
