"""
Tests for throttling failed logins in the bouncer, with a L{Clock}.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import Bouncer, KeycardDenied, KeycardRefused, MemoryStore
from twisted_keycard._hashpool import HashPool
from twisted_keycard.bouncer import Throttler, Upkeep, _login
from twisted_keycard.bouncer._settings import ExchangeLimits, Throttle
from twisted_keycard.error import Throttled
from twisted_keycard.keycard._keycard import Keycard
from twisted_keycard.passwords import PasswordFile, PasswordKeycard
from twisted_keycard.store import ThrottleEvent, ThrottleShare

from ._passphrase import PassphraseAnswerer, PassphraseChecker, PassphraseKeycard

DATA = Path(__file__).resolve().parent / "data"
WINDOW = 600.0
#: The follow interval: throttle counts are shared at each.
FOLLOW = Upkeep().followInterval


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

    def test_retryAfter(self) -> None:
        """
        A throttled login is told when the window lets it in again, at the
        latest: when the failure that must leave it does, the later of the
        account's and the address group's.
        """
        self.wrongPassword("alice", "10.0.0.1")
        self.clock.advance(10)
        self.wrongPassword("alice", "10.0.0.2")
        self.clock.advance(10)
        self.wrongPassword("alice", "10.0.0.3")
        self.clock.advance(5)
        failure = self.failureResultOf(
            self.attempt("alice", "pw", "10.0.0.4"), Throttled
        )
        self.assertEqual(failure.value.retryAfter, 35.0)
        for name in ["a", "b", "c", "d", "e"]:
            self.wrongPassword(name, "10.0.0.9")
        failure = self.failureResultOf(
            self.attempt("alice", "pw", "10.0.0.9"), Throttled
        )
        self.assertEqual(failure.value.retryAfter, 60.0)
        self.clock.advance(35)
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


class WaitingChecker(PassphraseChecker):
    """
    A passphrase checker whose checks wait until L{release}d, as a hash in
    a thread pool does.
    """

    def __init__(self, secrets: dict[str, str]) -> None:
        super().__init__(secrets)
        self.waiting: list[tuple[Deferred[str], Any]] = []
        self.wait = False

    def requestAvatarId(self, exchange: Any) -> Deferred[str]:
        result = super().requestAvatarId(exchange)
        if not self.wait:
            return result
        later: Deferred[str] = Deferred()
        self.waiting.append((later, result))
        return later

    def release(self) -> None:
        waiting, self.waiting = self.waiting, []
        for later, result in waiting:
            result.chainDeferred(later)


class ReservationTests(SynchronousTestCase):
    """
    Logins count against their address group from their first message, and
    against the account from the message that tries a password, so that
    logins started or answered together cannot race the throttle, and
    exchanges never answered cannot lock the account.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.store = MemoryStore()
        self.checker = WaitingChecker({"alice": "pw", "bob": "pw"})
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
        assert self.bouncer.throttler is not None
        return self.bouncer.throttler.count(key)

    def test_parallelAnswers(self) -> None:
        """
        With an account limit of 5, 60 exchanges started together all get a
        challenge (none tries a password); their 60 answers, sent together
        while the checks wait, reserve the account as each arrives: 5 reach
        the check, the others are refused at once.
        """
        starts = [self.start("alice", f"10.0.{i // 250}.{i % 250}") for i in range(60)]
        challenged = [self.successResultOf(d) for d in starts]
        self.assertEqual(self.failures("account:alice"), 0)
        self.checker.wait = True
        answers = [self.answer(keycard, "wrong") for keycard in challenged]
        self.assertEqual(len(self.checker.waiting), 5)
        for d in answers[5:]:
            failure = self.failureResultOf(d, KeycardDenied)
            self.assertIn("too many failed logins", failure.getErrorMessage())
        self.checker.release()
        for d in answers[:5]:
            self.failureResultOf(d, KeycardRefused)
        self.assertEqual(self.failures("account:alice"), 5)

    def test_rightPasswordAfterBurst(self) -> None:
        """
        The right password sent after 40 wrong answers in one burst is
        refused.
        """
        wrong = [self.start("alice", f"10.0.0.{i}") for i in range(40)]
        right = self.successResultOf(self.start("alice", "10.0.1.1"))
        challenged = [self.successResultOf(d) for d in wrong]
        self.checker.wait = True
        answers = [self.answer(keycard, "wrong") for keycard in challenged]
        self.failureResultOf(self.answer(right, "pw"), KeycardDenied)
        self.assertEqual(len(self.checker.waiting), 5)
        self.checker.release()
        for d in answers[:5]:
            self.failureResultOf(d, KeycardRefused)
        for d in answers[5:]:
            self.failureResultOf(d, KeycardDenied)
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

    def login(self, username: str, address: str) -> Deferred[Keycard]:
        challenged = self.successResultOf(self.start(username, address))
        return self.bouncer.authenticate(
            PassphraseAnswerer(username, "pw").answer(challenged)
        )

    def test_unansweredNeverLocksAccount(self) -> None:
        """
        Issue 23, finding 6: 100 first messages for one account from 4
        addresses, never answered, count against the 4 address groups only:
        once they time out, those groups are throttled, and the account
        logs in from a fifth address.
        """
        bouncer = self.bouncer = Bouncer(
            [self.checker],
            self.store,
            clock=self.clock,
            throttle=Throttle(perAccount=5, perAddress=20, window=600.0),
            limits=ExchangeLimits(timeout=30.0, maxPendingPerConnection=100),
        )
        starts = [self.start("alice", f"10.0.0.{i % 4}") for i in range(100)]
        challenged = [d for d in starts if isinstance(d.result, Keycard)]
        self.assertEqual(len(challenged), 80)
        for d in starts:
            if d not in challenged:
                self.failureResultOf(d, KeycardDenied)
        self.assertEqual(self.failures("account:alice"), 0)
        self.clock.advance(31.0)
        self.assertEqual(bouncer._pendingCount(), 0)
        for i in range(4):
            self.assertEqual(self.failures(f"address:10.0.0.{i}"), 20)
            self.failureResultOf(self.start("bob", f"10.0.0.{i}"), KeycardDenied)
        self.assertEqual(self.failures("account:alice"), 0)
        login = self.successResultOf(self.login("alice", "10.0.0.5"))
        self.assertEqual(login.avatarId, "alice")

    def test_abandonedCountsAgainstAddress(self) -> None:
        """
        An exchange whose connection is gone counts as a failure of its
        address group, not of its account.
        """
        self.successResultOf(self.start("alice", "10.0.0.1", "c1"))
        self.successResultOf(self.start("bob", "10.0.0.1", "c1"))
        self.bouncer.connectionLost("c1")
        self.assertEqual(self.failures("account:alice"), 0)
        self.assertEqual(self.failures("address:10.0.0.1"), 2)

    def test_pushedOutCountsAgainstAddress(self) -> None:
        """
        An exchange pushed out of a full table by another address group
        counts against its own address group, not its account.
        """
        self.bouncer = Bouncer(
            [self.checker],
            self.store,
            clock=self.clock,
            throttle=Throttle(perAccount=5, perAddress=30, window=600.0),
            limits=ExchangeLimits(maxPending=4, maxPendingPerConnection=100),
        )
        for _ in range(4):
            self.successResultOf(self.start("alice", "10.0.0.1"))
        self.successResultOf(self.start("bob", "10.0.0.2"))
        self.assertEqual(self.failures("address:10.0.0.1"), 4)
        self.assertEqual(self.bouncer._pendingCount(), 4)
        self.assertEqual(self.failures("account:alice"), 0)

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
        assert bouncer.throttler is not None
        self.assertEqual(bouncer.throttler.count("account:bob"), 0)
        self.assertEqual(bouncer.throttler.count("address:10.0.0.1"), 1)

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

    def test_passwordAccountRace(self) -> None:
        """
        60 password logins for one account from 60 addresses at once, with
        an account limit of 5: the account is reserved on each one's only
        message, so 5 reach the hash and the others are refused at once.
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
            throttle=Throttle(perAccount=5, perAddress=30),
        )
        results = [
            bouncer.authenticate(
                PasswordKeycard(
                    username="sha512", password="guess", address=f"10.0.0.{i}"
                )
            )
            for i in range(60)
        ]
        self.assertEqual(len(hashes), 5)
        denied = [d for d in results if d.called]
        self.assertEqual(len(denied), 55)
        for d in denied:
            self.failureResultOf(d, KeycardDenied)


class _Flaky(MemoryStore):
    """
    A memory store whose throttle log can be made unreachable.
    """

    down = False

    def shareThrottle(
        self, source: str, events: Sequence[ThrottleEvent], cursor: int, limit: int
    ) -> Deferred[ThrottleShare]:
        if self.down:
            return fail(ConnectionError("store unreachable"))
        return super().shareThrottle(source, events, cursor, limit)


class SharedThrottleTests(SynchronousTestCase):
    """
    Bouncers on one store decide from their own counts and share them every
    follow interval: what fails on one counts on the others within two
    intervals.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.store = _Flaky()
        self.checker = WaitingChecker({"alice": "pw", "bob": "pw"})

    def bouncer(self, name: str) -> Bouncer:
        bouncer = Bouncer(
            [self.checker],
            self.store,
            clock=self.clock,
            name=name,
            throttle=Throttle(perAccount=5, perAddress=100, window=WINDOW),
            limits=ExchangeLimits(maxPendingPerConnection=100),
        )
        bouncer.startService()
        self.addCleanup(bouncer.stopService)
        return bouncer

    def start(self, bouncer: Bouncer, username: str = "alice") -> Deferred[Keycard]:
        first = PassphraseKeycard(username=username, address="10.0.0.1")
        return bouncer.authenticate(first)

    def answer(self, bouncer: Bouncer, challenged: Keycard, secret: str) -> Any:
        answered = PassphraseAnswerer("alice", secret).answer(challenged)
        return bouncer.authenticate(answered)

    def failLogin(self, bouncer: Bouncer) -> None:
        challenged = self.successResultOf(self.start(bouncer))
        self.failureResultOf(self.answer(bouncer, challenged, "wrong"), KeycardRefused)

    def count(self, bouncer: Bouncer, key: str = "account:alice") -> int:
        assert bouncer.throttler is not None
        return bouncer.throttler.count(key)

    def test_failuresCountElsewhere(self) -> None:
        """
        Failures on one bouncer count on the other within two follow
        intervals, and the limit applies to the sum.
        """
        one, two = self.bouncer("one"), self.bouncer("two")
        for _ in range(3):
            self.failLogin(one)
        self.assertEqual((self.count(one), self.count(two)), (3, 0))
        self.clock.advance(FOLLOW)
        self.assertEqual(self.count(two), 3)
        self.failLogin(two)
        self.failLogin(two)
        self.failureResultOf(self.start(two), KeycardDenied)
        # One shares before two: it reads two's events at its next share.
        self.clock.advance(FOLLOW)
        self.assertEqual(self.count(one), 3)
        self.clock.advance(FOLLOW)
        self.assertEqual(self.count(one), 5)
        self.failureResultOf(self.start(one), KeycardDenied)
        self.successResultOf(self.start(one, "bob"))

    def test_inProgressCountsElsewhere(self) -> None:
        """
        Logins in progress at a share count as failures on the others until
        they succeed: exchanges waiting for their answer against their
        address group, answers being checked against their account too.
        """
        one, two = self.bouncer("one"), self.bouncer("two")
        address = "address:10.0.0.1"
        challenged = [self.successResultOf(self.start(one)) for _ in range(5)]
        self.clock.advance(FOLLOW)
        self.assertEqual((self.count(two, address), self.count(two)), (5, 0))
        self.checker.wait = True
        answers = [self.answer(one, keycard, "pw") for keycard in challenged]
        self.clock.advance(FOLLOW)
        self.assertEqual(self.count(two), 5)
        self.failureResultOf(self.start(two), KeycardDenied)
        self.checker.release()
        for d in answers:
            self.successResultOf(d)
        self.assertEqual((self.count(one, address), self.count(one)), (0, 0))
        self.clock.advance(FOLLOW)
        self.assertEqual((self.count(two, address), self.count(two)), (0, 0))
        self.successResultOf(self.start(two))

    def test_startedThenFailed(self) -> None:
        """
        A login sent as started that then fails counts once on the others,
        until it leaves the window.
        """
        one, two = self.bouncer("one"), self.bouncer("two")
        challenged = self.successResultOf(self.start(one))
        self.clock.advance(FOLLOW)
        self.failureResultOf(self.answer(one, challenged, "wrong"), KeycardRefused)
        self.clock.advance(FOLLOW)
        key = "address:10.0.0.1"
        self.assertEqual((self.count(one, key), self.count(two, key)), (1, 1))
        self.clock.advance(WINDOW - 2 * FOLLOW)
        self.assertEqual((self.count(one, key), self.count(two, key)), (0, 0))

    def test_spreadOverBouncers(self) -> None:
        """
        An attacker who spreads one burst over three bouncers before they
        share is checked at most three times the limit, then refused by
        every one until the failures leave the window.
        """
        bouncers = [self.bouncer(f"b{i}") for i in range(3)]
        checked = self.checker.checked
        results = [self.start(b) for _ in range(10) for b in bouncers]
        challenged = [
            (b, self.successResultOf(d))
            for b, d in zip(bouncers * 10, results, strict=True)
        ]
        self.checker.wait = True
        answers = [self.answer(b, keycard, "wrong") for b, keycard in challenged]
        self.assertEqual(len(self.checker.waiting), 3 * 5)
        self.checker.release()
        refused = [d for d in answers if d.result.check(KeycardRefused)]
        self.assertEqual(len(refused), 15)
        for d in answers:
            self.failureResultOf(d, KeycardRefused, KeycardDenied)
        self.assertEqual(self.checker.checked - checked, 15)
        self.clock.advance(2 * FOLLOW)
        for bouncer in bouncers:
            # The newest failures up to the limit are kept: enough.
            self.assertEqual(self.count(bouncer), 5)
            self.failureResultOf(self.start(bouncer), KeycardDenied)
        self.clock.advance(WINDOW)
        for bouncer in bouncers:
            self.successResultOf(self.start(bouncer))

    def test_startReadsWindow(self) -> None:
        """
        A bouncer that starts counts the failures of the window the store
        keeps, its own earlier runs' included.
        """
        one = self.bouncer("one")
        for _ in range(4):
            self.failLogin(one)
        self.clock.advance(FOLLOW)
        self.successResultOf(one.stopService())
        again = self.bouncer("one")
        self.assertEqual(self.count(again), 4)
        self.clock.advance(WINDOW)
        self.assertEqual(self.count(again), 0)

    def test_restartCountsOnce(self) -> None:
        """
        A bouncer stopped and started again reads only what it had not
        read: the others' failures count once.
        """
        one, two = self.bouncer("one"), self.bouncer("two")
        self.failLogin(one)
        self.clock.advance(FOLLOW)
        self.assertEqual(self.count(two), 1)
        self.successResultOf(two.stopService())
        two.startService()
        self.assertEqual(self.count(two), 1)

    def test_stopSendsTheRest(self) -> None:
        """
        A bouncer that stops sends what it has not sent yet: failures, and
        the logins in progress (as started: failures unless withdrawn).
        """
        one = self.bouncer("one")
        self.failLogin(one)
        self.failLogin(one)
        self.successResultOf(self.start(one))
        self.successResultOf(one.stopService())
        two = self.bouncer("two")
        self.assertEqual(self.count(two), 2)
        self.assertEqual(self.count(two, "address:10.0.0.1"), 3)

    def test_storeDownKeepsEvents(self) -> None:
        """
        While the store fails, the events are kept (the newest
        L{UNSHARED_KEPT}), the failure is logged, and they are sent once it
        is back.
        """
        self.patch(_login, "UNSHARED_KEPT", 6)
        events: list[LogEvent] = []
        observer: Any = events.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        one, two = self.bouncer("one"), self.bouncer("two")
        self.store.down = True
        for _ in range(3):
            self.failLogin(one)
        self.clock.advance(FOLLOW)
        # One line a bouncer, no traceback.
        down = [e for e in events if e.get("event") == "store.down"]
        self.assertEqual(len(down), 2)
        self.assertFalse([e for e in events if "log_failure" in e])
        for _ in range(2):
            self.failLogin(one)
        self.store.down = False
        self.clock.advance(FOLLOW)
        # Two events a failure (account and address): the last three.
        self.assertEqual(self.count(two), 3)
        self.assertEqual(self.count(one), 5)


class ThrottleMemoryTests(SynchronousTestCase):
    """
    The counts a bouncer keeps are bounded: a flood of names or addresses
    makes it forget the keys that count the least.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.throttler = Throttler(
            MemoryStore(), self.clock, Throttle(perAccount=10, maxKeys=50, window=60.0)
        )

    def failed(self, account: str | None, address: str | None = None) -> None:
        self.successResultOf(
            Deferred.fromCoroutine(self.throttler.failed(account, address))
        )

    def test_keysBounded(self) -> None:
        for i in range(1000):
            self.failed(f"user{i}", f"10.0.{i // 250}.{i % 250}")
        self.assertEqual(len(self.throttler), 50)

    def test_floodKeepsHeavy(self) -> None:
        """
        An account near its limit is kept through a flood of names that
        each failed once.
        """
        for _ in range(9):
            self.failed("alice")
        for i in range(10_000):
            self.failed(f"user{i}")
        self.assertEqual(self.throttler.count("account:alice"), 9)
        self.assertEqual(len(self.throttler), 50)

    def test_failuresCapped(self) -> None:
        """
        A key keeps as many failures as its limit, the newest: enough to
        refuse, no more.
        """
        for _ in range(100):
            self.clock.advance(0.1)
            self.failed("alice")
        self.assertEqual(self.throttler.count("account:alice"), 10)
        self.clock.advance(59.0)
        self.assertEqual(self.throttler.count("account:alice"), 10)

    def test_forgottenWhenEmpty(self) -> None:
        """
        Keys whose failures all left the window are forgotten at the next
        share.
        """
        for i in range(20):
            self.failed(f"user{i}")
        self.clock.advance(30)
        self.failed("alice")
        self.clock.advance(31)
        self.successResultOf(Deferred.fromCoroutine(self.throttler.share()))
        self.assertEqual(len(self.throttler), 1)
        self.assertEqual(self.throttler.count("account:alice"), 1)
