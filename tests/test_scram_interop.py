"""
Interoperability of L{twisted_keycard.scram} with an independent SCRAM
implementation, the scramp library, on either side and for verifiers.
"""

from __future__ import annotations

import contextlib
from base64 import b64decode, b64encode
from typing import Any

import scramp
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_keycard.error import KeycardRefused, ServerAuthenticationFailed
from twisted_keycard.interfaces import IAnswerer, IChallenger, IExchange
from twisted_keycard.scram import (
    ISCRAMExchange,
    SCRAMAnswerer,
    SCRAMKeycard,
    SCRAMVerifiers,
    Verifier,
)

MECHANISM = "SCRAM-SHA-256"

# RFC 7677, section 3.
USER, PASSWORD = "user", "pencil"
CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
SERVER_PART = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
SALT = b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
CLIENT_FINAL = (
    f"c=biws,r={CLIENT_NONCE}{SERVER_PART},"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
SERVER_FINAL = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

AuthInfo = tuple[bytes, bytes, bytes, int]


def _b64(data: bytes) -> str:
    return b64encode(data).decode("ascii")


def scrampClientLogin(
    checker: SCRAMVerifiers, client: scramp.ScramClient
) -> tuple[SCRAMKeycard, IExchange, Deferred[Any]]:
    """
    Run scramp's client against our checker up to the check.

    @return: the keycard, our exchange, and our checker's answer to
        C{requestAvatarId}.
    """
    keycard = SCRAMKeycard(clientFirst=client.get_client_first())
    exchange = SynchronousTestCase().successResultOf(checker.prime(keycard))
    assert verifyObject(ISCRAMExchange, exchange)
    exchange.challenge(keycard)
    client.set_server_first(keycard.serverFirst)
    keycard.clientFinal = client.get_client_final()
    exchange.answer(keycard)
    return keycard, exchange, checker.requestAvatarId(exchange)


def ourClientLogin(answerer: SCRAMAnswerer, info: AuthInfo) -> SCRAMKeycard:
    """
    Run our answerer against scramp's server, whose C{auth_fn} gives
    C{info}; return the keycard with scramp's server-final message.
    """
    server = scramp.ScramMechanism(MECHANISM).make_server(lambda username: info)
    keycard = answerer.start()
    assert isinstance(keycard, SCRAMKeycard)
    server.set_client_first(keycard.clientFirst)
    keycard.serverFirst = server.get_server_first()
    answerer.answer(keycard)
    # A refused proof gives an e= server-final message.
    with contextlib.suppress(scramp.ScramException):
        server.set_client_final(keycard.clientFinal)
    keycard.serverFinal = server.get_server_final()
    return keycard


class ScrampClientTests(SynchronousTestCase):
    """
    scramp's client against our L{SCRAMVerifiers}.
    """

    def setUp(self) -> None:
        self.checker = SCRAMVerifiers({"alice": Verifier.fromPassword("secret")})
        self.assertTrue(verifyObject(IChallenger, self.checker))
        self.assertTrue(verifyObject(ICredentialsChecker, self.checker))

    def test_rfc7677(self) -> None:
        """
        scramp's client with the RFC's nonce sends the RFC's messages, and
        takes our server's signature.
        """
        checker = SCRAMVerifiers(
            {USER: Verifier.fromPassword(PASSWORD, 4096, SALT)},
            nonceFactory=lambda: SERVER_PART,
        )
        client = scramp.ScramClient([MECHANISM], USER, PASSWORD, c_nonce=CLIENT_NONCE)
        keycard, exchange, checked = scrampClientLogin(checker, client)
        self.assertEqual(keycard.clientFinal, CLIENT_FINAL)
        self.assertEqual(self.successResultOf(checked), USER)
        exchange.conclude(keycard)
        self.assertEqual(keycard.serverFinal, SERVER_FINAL)
        client.set_server_final(keycard.serverFinal)

    def test_success(self) -> None:
        client = scramp.ScramClient([MECHANISM], "alice", "secret")
        keycard, exchange, checked = scrampClientLogin(self.checker, client)
        self.assertEqual(self.successResultOf(checked), "alice")
        exchange.conclude(keycard)
        client.set_server_final(keycard.serverFinal)

    def test_wrongPassword(self) -> None:
        client = scramp.ScramClient([MECHANISM], "alice", "wrong")
        _, _, checked = scrampClientLogin(self.checker, client)
        self.failureResultOf(checked, KeycardRefused)

    def test_unknownUser(self) -> None:
        """
        scramp's client takes our mock challenge as it would a real one.
        """
        client = scramp.ScramClient([MECHANISM], "nobody", "secret")
        _, _, checked = scrampClientLogin(self.checker, client)
        self.failureResultOf(checked, KeycardRefused)


class ScrampServerTests(SynchronousTestCase):
    """
    Our L{SCRAMAnswerer} against scramp's server.
    """

    def setUp(self) -> None:
        self.info: AuthInfo = scramp.ScramMechanism(MECHANISM).make_auth_info(
            "secret", 4096
        )

    def test_rfc7677(self) -> None:
        """
        scramp's server with the RFC's nonce and salt takes our client's
        RFC answer, and our client takes its signature.
        """
        info = scramp.ScramMechanism(MECHANISM).make_auth_info(PASSWORD, 4096, SALT)
        server = scramp.ScramMechanism(MECHANISM).make_server(
            lambda username: info, s_nonce=SERVER_PART
        )
        answerer = SCRAMAnswerer(USER, PASSWORD, nonce=CLIENT_NONCE)
        keycard = answerer.start()
        assert isinstance(keycard, SCRAMKeycard)
        server.set_client_first(keycard.clientFirst)
        keycard.serverFirst = server.get_server_first()
        answerer.answer(keycard)
        self.assertEqual(keycard.clientFinal, CLIENT_FINAL)
        server.set_client_final(keycard.clientFinal)
        keycard.serverFinal = server.get_server_final()
        self.assertEqual(keycard.serverFinal, SERVER_FINAL)
        answerer.finish(keycard)

    def test_success(self) -> None:
        answerer = SCRAMAnswerer("alice", "secret")
        self.assertTrue(verifyObject(IAnswerer, answerer))
        answerer.finish(ourClientLogin(answerer, self.info))

    def test_wrongPassword(self) -> None:
        """
        scramp refuses the proof and says so with C{e=}; our client refuses
        to finish.
        """
        answerer = SCRAMAnswerer("alice", "wrong")
        keycard = ourClientLogin(answerer, self.info)
        assert keycard.serverFinal is not None
        self.assertTrue(keycard.serverFinal.startswith("e="))
        with self.assertRaises(ServerAuthenticationFailed) as caught:
            answerer.finish(keycard)
        self.assertIn("error", str(caught.exception))

    def test_serverWithoutPassword(self) -> None:
        """
        A server that does not know the password (keys for another one)
        cannot prove itself, even if it skips its check.
        """
        other = scramp.ScramMechanism(MECHANISM).make_auth_info("other", 4096)
        answerer = SCRAMAnswerer("alice", "secret")
        keycard = ourClientLogin(answerer, other)
        keycard.serverFinal = "v=" + _b64(other[2][:32])
        self.assertRaises(ServerAuthenticationFailed, answerer.finish, keycard)


class VerifierInteropTests(SynchronousTestCase):
    """
    Verifiers made by one implementation, used by the other.
    """

    def test_scrampVerifierReadByUs(self) -> None:
        """
        Keys from scramp's C{make_auth_info}, written in PostgreSQL's format,
        are read by L{Verifier.fromString} and check both clients.
        """
        salt, stored, server, iterations = scramp.ScramMechanism(
            MECHANISM
        ).make_auth_info("secret", 4096)
        text = f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored)}:{_b64(server)}"
        verifier = Verifier.fromString(text)
        self.assertEqual(verifier.toString(), text)
        self.assertEqual(verifier, Verifier.fromPassword("secret", 4096, salt))
        checker = SCRAMVerifiers({"alice": verifier})

        client = scramp.ScramClient([MECHANISM], "alice", "secret")
        keycard, exchange, checked = scrampClientLogin(checker, client)
        self.assertEqual(self.successResultOf(checked), "alice")
        exchange.conclude(keycard)
        client.set_server_final(keycard.serverFinal)

    def test_ourVerifierReadByScramp(self) -> None:
        """
        The keys of a L{Verifier} serve scramp's server, which our client
        then logs in to.
        """
        verifier = Verifier.fromString(Verifier.fromPassword("secret").toString())
        info = (verifier.salt, verifier.storedKey, verifier.serverKey, 4096)
        answerer = SCRAMAnswerer("alice", "secret")
        answerer.finish(ourClientLogin(answerer, info))

    def test_sameKeys(self) -> None:
        """
        Both implementations derive the same keys from a password and salt,
        SASLprep included.
        """
        for password in ["pencil", "p\u00e4ss w\u00f6rd", "I\u00adX", "\u2168"]:
            ours = Verifier.fromPassword(password, 4096, SALT)
            theirs = scramp.ScramMechanism(MECHANISM).make_auth_info(
                password, 4096, SALT
            )
            self.assertEqual(
                (ours.salt, ours.storedKey, ours.serverKey, ours.iterations), theirs
            )
