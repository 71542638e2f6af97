"""
Tests for throttling failed logins in the bouncer, with a L{Clock}.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import Bouncer, KeycardDenied, KeycardRefused, MemoryStore
from twisted_keycard.bouncer._policy import Throttle
from twisted_keycard.keycard._keycard import Keycard

from ._passphrase import PassphraseAnswerer, PassphraseChecker, PassphraseKeycard


class ThrottleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.checker = PassphraseChecker({"alice": "pw", "bob": "pw"})
        self.bouncer = Bouncer(
            [self.checker],
            MemoryStore(),
            clock=self.clock,
            throttle=Throttle(perAccount=3, perAddress=5, window=60.0),
        )

    def attempt(self, username: str, secret: str, address: str) -> Deferred[Keycard]:
        first = PassphraseKeycard(username=username, address=address, requesterName="r")
        d = self.bouncer.authenticate(first)
        if not isinstance(d.result, Keycard):
            return d
        answered = PassphraseAnswerer(username, secret).answer(d.result)
        return self.bouncer.authenticate(answered)

    def wrongPassword(self, username: str, address: str) -> None:
        self.failureResultOf(self.attempt(username, "wrong", address), KeycardRefused)

    def test_perAccount(self) -> None:
        """
        Past the limit, even the right password is refused, before any
        check; the message says why.
        """
        for i in range(3):
            self.wrongPassword("alice", f"10.0.0.{i}")
        checked = self.checker.checked
        failure = self.failureResultOf(
            self.attempt("alice", "pw", "10.0.1.1"), KeycardDenied
        )
        self.assertIn("too many failed logins", failure.getErrorMessage())
        self.assertEqual(self.checker.checked, checked)
        self.successResultOf(self.attempt("bob", "pw", "10.0.1.1"))

    def test_unknownAccountSame(self) -> None:
        """
        An unknown account is throttled after as many failures, with the
        same refusal, as a known one.
        """
        for i in range(3):
            self.wrongPassword("mallory", f"10.0.0.{i}")
        for i in range(3):
            self.wrongPassword("alice", f"10.0.2.{i}")
        unknown = self.failureResultOf(
            self.attempt("mallory", "x", "10.0.3.1"), KeycardDenied
        )
        fourth = self.failureResultOf(
            self.attempt("alice", "x", "10.0.3.2"), KeycardDenied
        )
        self.assertEqual(unknown.getErrorMessage(), fourth.getErrorMessage())

    def test_windowSlides(self) -> None:
        self.wrongPassword("alice", "10.0.0.1")
        self.clock.advance(30)
        self.wrongPassword("alice", "10.0.0.2")
        self.wrongPassword("alice", "10.0.0.3")
        self.failureResultOf(self.attempt("alice", "pw", "10.0.0.4"), KeycardDenied)
        self.clock.advance(30.001)
        self.successResultOf(self.attempt("alice", "pw", "10.0.0.4"))

    def test_perAddress(self) -> None:
        for name in ["a", "b", "c", "d", "e"]:
            self.wrongPassword(name, "192.0.2.1")
        self.failureResultOf(self.attempt("bob", "pw", "192.0.2.1"), KeycardDenied)
        self.successResultOf(self.attempt("bob", "pw", "192.0.2.2"))

    def test_successDoesNotCount(self) -> None:
        for _ in range(10):
            self.successResultOf(self.attempt("alice", "pw", "10.0.0.1"))

    def test_needsCountingStore(self) -> None:
        self.assertRaises(
            ValueError,
            Bouncer,
            [self.checker],
            object(),
            clock=self.clock,
            throttle=Throttle(),
        )
