"""
Tests for L{twisted_keycard._hashpool.HashPool}: bounded, fair, and off the
reactor thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.base import ReactorBase
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from twisted_keycard import KeycardDenied
from twisted_keycard._hashpool import HashPool, IHashPool, _ThreadRunner

reactor: Any = _reactor


class ManualRunner:
    """
    Runs each call when the test says.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[[], Any], Deferred[Any]]] = []

    def __call__(self, call: Callable[[], Any]) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.calls.append((call, d))
        return d

    def finish(self, index: int = 0) -> None:
        call, d = self.calls.pop(index)
        try:
            result = call()
        except Exception as e:
            d.errback(e)
        else:
            d.callback(result)


class HashPoolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.runner = ManualRunner()
        self.pool = HashPool(threads=2, queued=3, runner=self.runner)

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IHashPool, self.pool))

    def test_result(self) -> None:
        d = self.pool.run("a", lambda x, y: x + y, 2, 3)
        self.assertNoResult(d)
        self.runner.finish()
        self.assertEqual(self.successResultOf(d), 5)

    def test_error(self) -> None:
        d = self.pool.run("a", lambda: 1 // 0)
        self.runner.finish()
        self.failureResultOf(d, ZeroDivisionError)

    def test_boundedThreads(self) -> None:
        """
        At most C{threads} calls run at once; the next waits for a thread.
        """
        results = [self.pool.run("a", lambda i=i: i) for i in range(3)]
        self.assertEqual(len(self.runner.calls), 2)
        self.runner.finish()
        self.assertEqual(self.successResultOf(results[0]), 0)
        self.assertEqual(len(self.runner.calls), 2)
        self.runner.finish()
        self.runner.finish()
        self.assertEqual([self.successResultOf(d) for d in results[1:]], [1, 2])
        self.assertEqual(self.runner.calls, [])

    def test_fullRefusedAtOnce(self) -> None:
        """
        Past C{threads} running and C{queued} waiting, a call from the same
        client is refused at once with L{KeycardDenied}.
        """
        results = [self.pool.run("a", lambda: None) for _ in range(5)]
        refused = self.pool.run("a", lambda: None)
        failure = self.failureResultOf(refused, KeycardDenied)
        self.assertIn("too many logins", failure.getErrorMessage())
        for d in results:
            self.assertNoResult(d)

    def test_fairShareOfQueue(self) -> None:
        """
        When the queue is full, a client with fewer calls in the pool than
        the busiest takes the place of that client's newest waiting call.
        """
        busy = [self.pool.run("attacker", lambda: "a") for _ in range(5)]
        mine = self.pool.run("me", lambda: "me")
        self.failureResultOf(busy[-1], KeycardDenied)
        self.assertNoResult(mine)
        self.runner.finish()
        # The freed thread goes to the client with the fewest running.
        self.assertEqual(self.successResultOf(busy[0]), "a")
        self.runner.finish()
        self.runner.finish()
        self.assertEqual(self.successResultOf(mine), "me")

    def test_newcomerFirst(self) -> None:
        """
        A freed thread takes the oldest call of the client that has had the
        fewest calls started, not of the one with the fewest running: a
        client that keeps the pool busy waits behind one that just came.
        """
        pool = HashPool(threads=2, queued=10, runner=self.runner)
        busy = [pool.run("a", lambda: "a") for _ in range(5)]
        self.runner.finish(0)  # a1 done, a3 starts: a has had 3 started
        other = [pool.run("b", lambda: "b") for _ in range(2)]
        self.runner.finish(0)  # a2 done, b1 starts (b: 1 started, 1 running)
        self.runner.finish(0)  # a3 done: b2 goes before a4, though b runs one
        self.assertEqual(len(self.runner.calls), 2)
        self.runner.finish(-1)
        self.assertEqual(self.successResultOf(other[1]), "b")
        self.assertNoResult(busy[3])

    def test_startedForgotten(self) -> None:
        """
        A client with nothing left in the pool starts afresh: what it had
        started before does not count against it.
        """
        first = self.pool.run("a", lambda: "a")
        self.runner.finish()
        self.successResultOf(first)
        self.assertEqual(self.pool._started, {})
        for _ in range(2):
            self.pool.run("b", lambda: "b")
        later = [self.pool.run("b", lambda: "b"), self.pool.run("a", lambda: "a")]
        self.runner.finish()
        # a starts before b's older call: b has had two started, a none.
        self.runner.finish(-1)
        self.assertEqual(self.successResultOf(later[1]), "a")
        self.assertNoResult(later[0])

    def test_cancelWaiting(self) -> None:
        """
        A waiting call that is cancelled leaves the queue and never runs.
        """
        ran = []
        for _ in range(2):
            self.pool.run("a", lambda: None)
        d = self.pool.run("a", lambda: ran.append(1))
        d.cancel()
        self.failureResultOf(d)
        self.runner.finish()
        self.runner.finish()
        self.assertEqual((ran, self.runner.calls), ([], []))
        self.assertIn("0/3 waiting", repr(self.pool))

    def test_cancelRunning(self) -> None:
        d = self.pool.run("a", lambda: "late")
        d.cancel()
        self.failureResultOf(d)
        self.runner.finish()
        self.assertIn("0/2 running", repr(self.pool))

    def test_sizes(self) -> None:
        self.assertRaises(ValueError, HashPool, threads=0, runner=self.runner)
        self.assertRaises(ValueError, HashPool, queued=-1, runner=self.runner)


class HashPoolThreadTests(TestCase):
    """
    The default runner: real threads.
    """

    def test_offReactorThread(self) -> Deferred[None]:
        pool = HashPool(reactor, threads=1, queued=1)
        self.addCleanup(pool.stop)

        async def go() -> None:
            thread = await pool.run("a", threading.current_thread)
            self.assertIsNot(thread, threading.current_thread())
            self.assertTrue(thread.daemon)

        return ensureDeferred(go())


class _ShutdownReactor(ReactorBase):
    """
    A reactor that never runs, whose system events a test fires.
    """

    def installWaker(self) -> None:
        pass

    def removeAll(self) -> list[Any]:
        return []


class ThreadRunnerShutdownTests(SynchronousTestCase):
    """
    The default runner's pool stops when its reactor shuts down.
    """

    def test_stoppedAtShutdown(self) -> None:
        """
        The shutdown stops the pool, with no error logged (the trigger,
        which the reactor removed as it fired it, is not removed again).
        """
        fakeReactor = _ShutdownReactor()
        runner = _ThreadRunner(fakeReactor, 1)
        runner(lambda: None)
        self.assertTrue(runner._pool.started)
        fakeReactor.fireSystemEvent("shutdown")
        self.assertFalse(runner._pool.started)
        self.assertEqual(self.flushLoggedErrors(), [])
        runner.stop()  # again: nothing to do

    def test_stoppedBefore(self) -> None:
        """
        A runner stopped before the shutdown removes its trigger: the
        shutdown finds nothing to stop.
        """
        fakeReactor = _ShutdownReactor()
        runner = _ThreadRunner(fakeReactor, 1)
        runner(lambda: None)
        runner.stop()
        self.assertFalse(runner._pool.started)
        fakeReactor.fireSystemEvent("shutdown")
        self.assertEqual(self.flushLoggedErrors(), [])
