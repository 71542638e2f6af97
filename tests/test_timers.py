"""
Tests for L{twisted_keycard.bouncer._held.ExpiryTimers}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard.bouncer._held import ExpiryTimers


class ExpiryTimersTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.expired: list[list[str]] = []
        self.timers = ExpiryTimers(self.clock, self.expired.append)

    def test_oneDelayedCall(self) -> None:
        """
        However many timers there are, one delayed call is pending.
        """
        for i in range(100):
            self.timers.schedule(f"k{i}", 10.0 + i)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(10)
        self.assertEqual(self.expired, [["k0"]])
        self.clock.advance(1000)
        self.assertEqual(sum(len(batch) for batch in self.expired), 100)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_reschedule(self) -> None:
        self.timers.schedule("a", 5.0)
        self.timers.schedule("a", 15.0)
        self.clock.advance(10)
        self.assertEqual(self.expired, [])
        self.clock.advance(5)
        self.assertEqual(self.expired, [["a"]])

    def test_earlierFirst(self) -> None:
        self.timers.schedule("late", 20.0)
        self.timers.schedule("early", 5.0)
        self.clock.advance(5)
        self.assertEqual(self.expired, [["early"]])

    def test_cancel(self) -> None:
        self.timers.schedule("a", 5.0)
        self.timers.schedule("b", 6.0)
        self.assertTrue(self.timers.cancel("a"))
        self.assertFalse(self.timers.cancel("a"))
        self.clock.advance(10)
        self.assertEqual(self.expired, [["b"]])
        self.assertNotIn("b", self.timers)

    def test_cancelLastStopsTimer(self) -> None:
        self.timers.schedule("a", 5.0)
        self.timers.cancel("a")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_staleEntriesBounded(self) -> None:
        """
        Renewing one timer many times does not grow the heap without bound.
        """
        for i in range(10_000):
            self.timers.schedule("a", 10.0 + i)
        self.assertLess(len(self.timers._heap), 200)
        self.assertEqual(len(self.timers), 1)

    def test_stop(self) -> None:
        self.timers.schedule("a", 5.0)
        self.timers.stop()
        self.clock.advance(10)
        self.assertEqual(self.expired, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_pastTimeExpiresNow(self) -> None:
        self.clock.advance(100)
        self.timers.schedule("a", 50.0)
        self.clock.advance(0)
        self.assertEqual(self.expired, [["a"]])
