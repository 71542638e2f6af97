"""
Plain passwords checked against SCRAM-SHA-256 verifiers: the server-side
proof, the mock verifier for unknown users, and the work done off the
reactor thread.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import UsernamePassword
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_keycard import IChallenger
from twisted_keycard.error import KeycardDenied, KeycardRefused
from twisted_keycard.keycard import addressGroup
from twisted_keycard.passwords import (
    HashPool,
    IHashPool,
    PasswordExchange,
    PasswordKeycard,
)
from twisted_keycard.scram import SCRAMPasswordChecker, SCRAMVerifiers, Verifier
from twisted_keycard.scram._password import storedKeyMatches


@implementer(IHashPool)
class RecordingPool:
    """
    A hash pool that records each hash and runs it at once.
    """

    def __init__(self) -> None:
        self.ran: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self.keys: list[Hashable] = []

    def run(self, key: Hashable, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        self.keys.append(key)
        self.ran.append((f, args))
        return maybeDeferred(f, *args)


class SCRAMPasswordTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pool = RecordingPool()
        self.ran = self.pool.ran
        self.verifiers = SCRAMVerifiers(
            {"alice": Verifier.fromPassword("secret", 4096)}, iterations=4096
        )
        self.checker = SCRAMPasswordChecker(self.verifiers, hashPool=self.pool)

    def check(self, username: Any, password: Any) -> Deferred[Any]:
        return self.checker.requestAvatarId(UsernamePassword(username, password))

    def test_interfaces(self) -> None:
        verifyObject(ICredentialsChecker, self.checker)
        verifyObject(IChallenger, self.checker)

    def test_right(self) -> None:
        self.assertEqual(self.successResultOf(self.check("alice", "secret")), "alice")
        self.assertEqual(
            self.successResultOf(self.check(b"alice", b"secret")),
            "alice",
        )

    def test_wrongAndUnknownAlike(self) -> None:
        """
        A wrong password and an unknown user fail alike, after the same
        PBKDF2 work (same iteration count and salt length), in the thread.
        """
        self.failureResultOf(self.check("alice", "wrong"), KeycardRefused)
        self.failureResultOf(self.check("mallory", "wrong"), KeycardRefused)
        (f1, (_, real)), (f2, (_, mock)) = self.ran
        self.assertIs(f1, storedKeyMatches)
        self.assertIs(f2, storedKeyMatches)
        self.assertEqual(real.iterations, mock.iterations)
        self.assertEqual(len(real.salt), len(mock.salt))
        # The mock salt is stable per user name, as in the SCRAM exchange.
        self.failureResultOf(self.check("mallory", "other"), KeycardRefused)
        self.assertEqual(self.ran[2][1][1].salt, mock.salt)

    def test_hashPool(self) -> None:
        """
        The PBKDF2 runs in the hash pool, under the client's address group,
        and a full pool denies a login at once, before any hashing
        (issue 23: Basic failures used the reactor's unbounded pool).
        """
        exchange = PasswordExchange(
            username="alice", password="wrong", address="10.1.2.3"
        )
        self.failureResultOf(self.checker.requestAvatarId(exchange), KeycardRefused)
        self.assertEqual(self.pool.keys, [addressGroup("10.1.2.3")])
        held: list[Callable[[], Any]] = []

        def hold(call: Callable[[], Any]) -> Deferred[Any]:
            held.append(call)
            return Deferred()

        full = SCRAMPasswordChecker(
            self.verifiers, hashPool=HashPool(threads=1, queued=0, runner=hold)
        )
        self.assertNoResult(full.requestAvatarId(exchange))
        self.failureResultOf(full.requestAvatarId(exchange), KeycardDenied)
        self.assertEqual(len(held), 1)

    def test_prohibitedPassword(self) -> None:
        self.failureResultOf(self.check("alice", "\u0007bell"), KeycardRefused)

    def test_primesPasswordKeycards(self) -> None:
        """
        As a challenger it takes password keycards, so a bouncer can check
        them; the password is not sent back.
        """
        keycard = PasswordKeycard(username="alice", password="secret")
        exchange = self.successResultOf(self.checker.prime(keycard))
        self.assertFalse(exchange.challenge(keycard))
        self.assertIsNone(keycard.password)
        self.assertEqual(
            self.successResultOf(self.checker.requestAvatarId(exchange)), "alice"
        )
