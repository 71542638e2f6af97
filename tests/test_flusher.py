"""
Tests for L{twisted_keycard.bouncer._upkeep}: a running bouncer forgets
failed logins once they leave the throttling window, in every store.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import Bouncer, KeycardDenied, KeycardRefused, MemoryStore
from twisted_keycard.bouncer._settings import Throttle, Upkeep
from twisted_keycard.bouncer._upkeep import Flushed, Flusher
from twisted_keycard.store import ThrottleEvent
from twisted_keycard.store.sqlite._store import SQLiteStore

from ._passphrase import PassphraseAnswerer, PassphraseChecker, PassphraseKeycard

if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object

#: Failed logins, each for another name from another address.
FAILURES = 300
WINDOW = 60.0
FLUSH = 10.0
#: The follow interval: throttle counts are shared at each.
FOLLOW = Upkeep().followInterval


class _FailuresFlushed(_Base):
    """
    Failed logins leave the store within a flush interval after they leave
    the window; mixed into a test case that says how to count them.
    """

    store: Any

    def makeStore(self) -> Any:
        raise NotImplementedError()

    def entries(self) -> int:
        raise NotImplementedError()

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = self.makeStore()
        self.bouncer = Bouncer(
            [PassphraseChecker({"alice": "pw"})],
            self.store,
            clock=self.clock,
            throttle=Throttle(perAccount=5, perAddress=5, window=WINDOW),
            upkeep=Upkeep(flushInterval=FLUSH),
        )

    def failLogin(self, name: str, address: str) -> None:
        keycard = PassphraseKeycard(username=name, address=address, requesterName="r")
        challenged = self.successResultOf(self.bouncer.authenticate(keycard))
        answered = PassphraseAnswerer(name, "wrong").answer(challenged)
        self.failureResultOf(self.bouncer.authenticate(answered), KeycardRefused)

    def test_flushedAfterWindow(self) -> None:
        """
        Failures for many names leave records (once shared, at the next
        follow interval) that the running bouncer removes, every one, once
        the window is over; none before.
        """
        self.bouncer.startService()
        self.addCleanup(self.bouncer.stopService)
        for i in range(FAILURES):
            self.failLogin(f"user{i}", f"10.0.{i // 250}.{i % 250}")
        self.clock.advance(FOLLOW)
        self.assertTrue(self.entries() >= FAILURES)
        self.clock.advance(WINDOW - FLUSH - FOLLOW)
        self.assertTrue(self.entries() >= FAILURES)
        self.clock.advance(FLUSH)
        self.assertEqual(self.entries(), 0)

    def test_recentKept(self) -> None:
        """
        A flush forgets only what the window no longer counts: the
        account stays throttled as before.
        """
        self.bouncer = Bouncer(
            [PassphraseChecker({"alice": "pw"})],
            self.store,
            clock=self.clock,
            throttle=Throttle(
                perAccount=5, perAddress=5, window=WINDOW, flushInterval=10 * WINDOW
            ),
            upkeep=Upkeep(flushInterval=10 * WINDOW),
        )
        self.bouncer.startService()
        self.addCleanup(self.bouncer.stopService)
        for i in range(5):
            self.failLogin("alice", f"10.0.0.{i}")
        self.clock.advance(WINDOW - 1)
        flushed = self.successResultOf(self.bouncer.flush())
        self.assertEqual(flushed, Flushed())
        self.assertEqual(self.entries(), 10)
        keycard = PassphraseKeycard(username="alice", address="10.0.1.1")
        self.failureResultOf(self.bouncer.authenticate(keycard), KeycardDenied)
        self.clock.advance(1)
        flushed = self.successResultOf(self.bouncer.flush())
        self.assertEqual(flushed.failures, 10)
        self.assertEqual(self.entries(), 0)

    def pump(self, seconds: float) -> None:
        """
        Let C{seconds} pass a second at a time, as a running reactor would
        (one jump would run a late flush at its end).
        """
        for _ in range(int(seconds)):
            self.clock.advance(1)

    def throttled(self, throttle: Throttle) -> None:
        """
        Run the bouncer with C{throttle}, its other flushes far apart.
        """
        self.bouncer = Bouncer(
            [PassphraseChecker({"alice": "pw"})],
            self.store,
            clock=self.clock,
            throttle=throttle,
            upkeep=Upkeep(flushInterval=100 * WINDOW),
        )
        self.bouncer.startService()
        self.addCleanup(self.bouncer.stopService)

    def test_flushFollowsWindow(self) -> None:
        """
        Failed logins are flushed every twelfth of the window by default,
        whatever the flush interval of expired keycards: gone within that
        long after they leave the window.
        """
        self.throttled(Throttle(perAccount=5, perAddress=5, window=WINDOW))
        self.clock.advance(FOLLOW)
        for i in range(3):
            self.failLogin(f"user{i}", f"10.0.0.{i}")
        self.clock.advance(FOLLOW)
        self.assertEqual(self.entries(), 6)
        # Out of the window after FOLLOW + WINDOW; flushed at the next
        # twelfth of it.
        self.pump(WINDOW + WINDOW / 12 - 2 * FOLLOW - 1)
        self.assertEqual(self.entries(), 6)
        self.clock.advance(1)
        self.assertEqual(self.entries(), 0)

    def test_flushInterval(self) -> None:
        """
        The interval of that flush is a setting.
        """
        every = WINDOW / 2
        self.throttled(Throttle(window=WINDOW, flushInterval=every))
        self.clock.advance(FOLLOW)
        self.failLogin("alice", "10.0.0.1")
        self.clock.advance(FOLLOW)
        self.pump(WINDOW + every - 2 * FOLLOW - 1)
        self.assertEqual(self.entries(), 2)
        self.clock.advance(1)
        self.assertEqual(self.entries(), 0)

    def test_retention(self) -> None:
        """
        With a retention longer than the window (the longest window of the
        bouncers sharing the store), failures are kept that long, no
        longer.
        """
        self.throttled(Throttle(window=WINDOW, retention=2 * WINDOW))
        self.failLogin("alice", "10.0.0.1")
        self.clock.advance(FOLLOW)
        self.pump(2 * WINDOW - FOLLOW - 1)
        self.assertEqual(self.entries(), 2)
        self.clock.advance(WINDOW / 12 + 1)
        self.assertEqual(self.entries(), 0)


class MemoryFailuresFlushedTests(_FailuresFlushed, SynchronousTestCase):
    def makeStore(self) -> MemoryStore:
        return MemoryStore()

    def entries(self) -> int:
        return len(
            self.successResultOf(self.store.shareThrottle("t", [], 0, 10**6)).events
        )


class SQLiteFailuresFlushedTests(_FailuresFlushed, SynchronousTestCase):
    def makeStore(self) -> SQLiteStore:
        self.path = self.mktemp()
        store = SQLiteStore(self.path, threaded=False)
        self.addCleanup(store.close)
        return store

    def entries(self) -> int:
        connection = sqlite3.connect(self.path)
        try:
            (rows,) = connection.execute("SELECT COUNT(*) FROM throttle_log").fetchone()
        finally:
            connection.close()
        return int(rows)


class FlusherTests(SynchronousTestCase):
    def test_noWindowNoFailuresFlushed(self) -> None:
        """
        A bouncer that does not throttle does not know which failures
        other bouncers on the store still count, and leaves them.
        """
        store = MemoryStore()
        failed = [ThrottleEvent("account:alice", 0.0)]
        self.successResultOf(store.shareThrottle("b", failed, 0, 0))
        clock = Clock()
        clock.advance(10_000)
        flusher = Flusher(store, clock, FLUSH)
        self.assertEqual(self.successResultOf(flusher.flush()), Flushed())
        shared = self.successResultOf(store.shareThrottle("a", [], 0, 10))
        self.assertEqual(shared.events, failed)


class ThrottleSettingsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        Failed logins are kept for the window, and flushed every twelfth of
        it, from 1 to 300 seconds.
        """
        for window, every in [(3600.0, 300.0), (60.0, 5.0), (6.0, 1.0), (86400, 300)]:
            throttle = Throttle(window=window)
            self.assertEqual(throttle.kept, window)
            self.assertEqual(throttle.flushEvery, every)
        throttle = Throttle(window=60.0, retention=600.0, flushInterval=2.0)
        self.assertEqual((throttle.kept, throttle.flushEvery), (600.0, 2.0))

    def test_bad(self) -> None:
        """
        A retention shorter than the window would forget failures it still
        counts; none of the three is zero, negative or infinite.
        """
        with self.assertRaises(ValueError):
            Throttle(window=60.0, retention=30.0)
        for bad in [0.0, -1.0, float("inf"), float("nan")]:
            for name in ["window", "retention", "flushInterval"]:
                with self.assertRaises(ValueError, msg=(name, bad)):
                    Throttle(**cast("dict[str, Any]", {name: bad}))
