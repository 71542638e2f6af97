"""
Tests for throttling failed logins in the bouncer, with a L{Clock}.
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import Bouncer, KeycardDenied, KeycardRefused, MemoryStore
from twisted_keycard._hashpool import HashPool
from twisted_keycard.bouncer._settings import ExchangeLimits, Throttle
from twisted_keycard.keycard._keycard import Keycard
from twisted_keycard.passwords import PasswordFile, PasswordKeycard

from ._passphrase import PassphraseAnswerer, PassphraseChecker, PassphraseKeycard

DATA = Path(__file__).resolve().parent / "data"


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


class ReservationTests(SynchronousTestCase):
    """
    Logins count against the limits from their first message, so that
    logins started together cannot race the throttle.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.store = MemoryStore()
        self.checker = PassphraseChecker({"alice": "pw", "bob": "pw"})
        self.bouncer = Bouncer(
            [self.checker],
            self.store,
            clock=self.clock,
            throttle=Throttle(perAccount=5, perAddress=30, window=600.0),
            limits=ExchangeLimits(timeout=30.0, maxPendingPerConnection=100),
        )

    def start(
        self, username: str, address: str, connection: object = None
    ) -> Deferred[Keycard]:
        first = PassphraseKeycard(username=username, address=address, requesterName="r")
        return self.bouncer.authenticate(first, connection)

    def answer(self, challenged: Keycard, secret: str) -> Deferred[Keycard]:
        return self.bouncer.authenticate(
            PassphraseAnswerer("alice", secret).answer(challenged)
        )

    def failures(self, key: str) -> int:
        counts = self.successResultOf(self.store.failuresSince([key], 0.0))
        return int(counts[key])

    def test_parallelStarts(self) -> None:
        """
        With an account limit of 5, 60 exchanges started together: 5 get a
        challenge, the others are refused at once.
        """
        results = [self.start("alice", f"10.0.{i // 250}.{i % 250}") for i in range(60)]
        challenged = [d for d in results if isinstance(d.result, Keycard)]
        self.assertEqual(len(challenged), 5)
        for d in results:
            if d not in challenged:
                failure = self.failureResultOf(d, KeycardDenied)
                self.assertIn("too many failed logins", failure.getErrorMessage())

    def test_rightPasswordAfterBurst(self) -> None:
        """
        The right password sent after 40 wrong answers in one burst is
        refused.
        """
        wrong = [self.start("alice", f"10.0.0.{i}") for i in range(40)]
        right = self.start("alice", "10.0.1.1")
        self.failureResultOf(right, KeycardDenied)
        challenged = [d.result for d in wrong if isinstance(d.result, Keycard)]
        self.assertEqual(len(challenged), 5)
        for d in wrong[5:]:
            self.failureResultOf(d, KeycardDenied)
        for keycard in challenged:
            self.failureResultOf(self.answer(keycard, "wrong"), KeycardRefused)
        again = self.start("alice", "10.0.1.1")
        self.failureResultOf(again, KeycardDenied)
        self.assertEqual(self.failures("account:alice"), 5)

    def test_successForgotten(self) -> None:
        """
        Logins in progress count while they last; a success frees its
        place under the limit.
        """
        for _ in range(20):
            challenged = self.successResultOf(self.start("alice", "10.0.0.1"))
            self.successResultOf(self.answer(challenged, "pw"))
        self.assertEqual(self.failures("account:alice"), 0)

    def test_unansweredIsFailure(self) -> None:
        """
        An exchange that times out unanswered counts as a failure.
        """
        for i in range(5):
            self.successResultOf(self.start("alice", f"10.0.0.{i}"))
        self.clock.advance(31.0)
        self.failureResultOf(self.start("alice", "10.0.1.1"), KeycardDenied)
        self.assertEqual(self.failures("account:alice"), 5)
        self.assertEqual(self.failures("address:10.0.0.1"), 1)
        self.clock.advance(600.0)
        self.successResultOf(self.start("alice", "10.0.1.1"))

    def test_abandonedIsFailure(self) -> None:
        """
        An exchange whose connection is gone counts as a failure.
        """
        self.successResultOf(self.start("alice", "10.0.0.1", "c1"))
        self.successResultOf(self.start("bob", "10.0.0.1", "c1"))
        self.bouncer.connectionLost("c1")
        self.assertEqual(self.failures("account:alice"), 1)
        self.assertEqual(self.failures("address:10.0.0.1"), 2)

    def test_busyIsNoFailure(self) -> None:
        """
        A login refused because too many are in progress is not counted.
        """
        connection = object()
        bouncer = Bouncer(
            [self.checker],
            self.store,
            clock=self.clock,
            throttle=Throttle(perAccount=5, perAddress=30, window=600.0),
            limits=ExchangeLimits(maxPendingPerConnection=1),
        )
        first = PassphraseKeycard(username="bob", address="10.0.0.1")
        self.successResultOf(bouncer.authenticate(first, connection))
        second = PassphraseKeycard(username="bob", address="10.0.0.1")
        self.failureResultOf(bouncer.authenticate(second, connection), KeycardDenied)
        self.assertEqual(self.failures("account:bob"), 0)
        self.assertEqual(
            self.successResultOf(self.store.failuresSince(["address:10.0.0.1"], 0.0)),
            {"address:10.0.0.1": 0},
        )

    def test_successUnlocksNothing(self) -> None:
        """
        A success does not clear the failures counted against the account
        from other addresses: the account is locked when they reach the
        limit, whoever succeeded meanwhile.
        """
        for i in range(4):
            challenged = self.successResultOf(self.start("alice", f"10.0.0.{i}"))
            self.failureResultOf(self.answer(challenged, "wrong"), KeycardRefused)
        challenged = self.successResultOf(self.start("alice", "10.0.9.9"))
        self.successResultOf(self.answer(challenged, "pw"))
        challenged = self.successResultOf(self.start("alice", "10.0.0.5"))
        self.failureResultOf(self.answer(challenged, "wrong"), KeycardRefused)
        self.failureResultOf(self.start("alice", "10.0.9.9"), KeycardDenied)

    def test_settleFailureLogged(self) -> None:
        """
        A store that fails to settle a reservation is logged; the client
        gets the refusal it would have got.
        """

        class Failing(MemoryStore):
            def settle(self, reservationId: str, failed: bool) -> Deferred[None]:
                return fail(RuntimeError("disk on fire"))

        bouncer = Bouncer(
            [self.checker],
            Failing(),
            clock=self.clock,
            throttle=Throttle(),
        )
        first = PassphraseKeycard(username="alice", address="10.0.0.1")
        challenged = self.successResultOf(bouncer.authenticate(first))
        answered = PassphraseAnswerer("alice", "wrong").answer(challenged)
        self.failureResultOf(bouncer.authenticate(answered), KeycardRefused)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class PasswordReservationTests(SynchronousTestCase):
    """
    Password files (one message, no challenge) are reserved too.
    """

    def test_passwordChecksBounded(self) -> None:
        """
        60 password logins from one address at once, with an address limit
        of 30: 30 reach the hash, the others are refused at once.
        """
        hashes: list[Deferred[object]] = []

        def later(call: object) -> Deferred[object]:
            d: Deferred[object] = Deferred()
            hashes.append(d)
            return d

        checker = PasswordFile(
            DATA / "htpasswd.txt",
            hashPool=HashPool(threads=100, queued=0, runner=later),
        )
        bouncer = Bouncer(
            [checker],
            MemoryStore(),
            clock=Clock(),
            throttle=Throttle(perAccount=100, perAddress=30),
            limits=ExchangeLimits(maxPendingPerAddress=100),
        )
        results = [
            bouncer.authenticate(
                PasswordKeycard(
                    username=f"user{i}", password="guess", address="10.0.0.1"
                )
            )
            for i in range(60)
        ]
        self.assertEqual(len(hashes), 30)
        denied = [d for d in results if d.called]
        self.assertEqual(len(denied), 30)
        for d in denied:
            self.failureResultOf(d, KeycardDenied)
