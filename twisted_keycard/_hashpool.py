"""
A bounded pool of threads for slow password hashes (argon2, bcrypt,
sha-crypt): a flood of logins costs a bounded number of hashes at once and a
bounded queue, shared fairly among client address groups, and never runs on
the reactor thread.  Past the bounds a login is refused at once with
L{KeycardDenied}, rather than queued for seconds.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Hashable
from threading import Thread
from typing import Any, TypeVar

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import Interface, implementer

from twisted_keycard.error import KeycardDenied

_T = TypeVar("_T")

#: Hashes computed at once, by default: an argon2 hash (4 lanes with
#: libpass's defaults) already uses the cores of a small machine, and holds
#: 64 MiB while it runs; the reactor keeps a core for bcrypt or sha-crypt.
THREADS = 1

#: Hashes waiting for a thread, at most, by default.
QUEUED = 16

#: The refusal when the pool is full.
BUSY = "too many logins being checked; try again later"

#: Runs a call in another thread and gives its result in the reactor thread.
Runner = Callable[[Callable[[], Any]], "Deferred[Any]"]


class IHashPool(Interface):
    """
    Where a checker runs its slow hashes.
    """

    def run(key: Hashable, f: Callable[..., _T], *args: object) -> Deferred[_T]:
        """
        Run C{f(*args)} off the reactor thread.

        @param key: who asks (the client's address group), so that one
            client cannot take every place.
        @return: a L{Deferred} firing with C{f}'s result in the reactor
            thread, or failing with what it raised, or with L{KeycardDenied}
            at once when the pool is full.
        """


@attrs.define(eq=False)
class _Job:
    key: Hashable
    call: Callable[[], Any]
    deferred: Deferred[Any]
    order: int


class _DaemonThread(Thread):
    """
    A thread that does not keep the process alive at exit.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.daemon = True


class _DaemonThreadPool(ThreadPool):
    """
    A thread pool whose threads do not keep the process alive at exit, for
    a pool that nobody stopped (the reactor's shutdown stops it).
    """

    threadFactory = _DaemonThread


class _ThreadRunner:
    """
    Runs calls on a L{ThreadPool} of its own, started at first use and
    stopped when the reactor shuts down.
    """

    def __init__(self, reactor: Any, threads: int) -> None:
        self._reactor = reactor
        self._pool = _DaemonThreadPool(0, threads, name="keycard-hashes")
        self._trigger: object = None

    def __call__(self, call: Callable[[], Any]) -> Deferred[Any]:
        if not self._pool.started:
            self._pool.start()
            self._trigger = self._reactor.addSystemEventTrigger(
                "during", "shutdown", self._shutdown
            )
        return deferToThreadPool(self._reactor, self._pool, call)

    def _shutdown(self) -> None:
        # The reactor removed the trigger as it fired it: removing it again
        # would raise, and leave the pool running.
        self._trigger = None
        self.stop()

    def stop(self) -> None:
        if self._trigger is not None:
            self._reactor.removeSystemEventTrigger(self._trigger)
            self._trigger = None
        if self._pool.started:
            self._pool.stop()


@implementer(IHashPool)
class HashPool:
    """
    At most C{threads} hashes at once and C{queued} waiting.

    A freed thread takes the oldest waiting hash of the key that has had
    the fewest hashes started since it last had none in the pool: a client
    that keeps the pool busy waits behind one that just came.  When the
    queue is full, a key with fewer hashes in the pool than the busiest
    one takes the place of that key's newest waiting hash (which is
    refused); otherwise the new hash is refused.
    """

    def __init__(
        self,
        reactor: Any = None,
        threads: int = THREADS,
        queued: int = QUEUED,
        *,
        runner: Runner | None = None,
    ) -> None:
        """
        @param reactor: delivers results; the global reactor if C{None},
            looked up when the first hash runs (so a pool made before a
            program installs its reactor uses that one).
        @param threads: hashes computed at once, at least 1.
        @param queued: hashes waiting for a thread, at most.
        @param runner: runs one call off the reactor thread; by default a
            thread pool of C{threads} threads.  A test passes one that runs
            the call at once, or when it says.
        """
        if threads < 1 or queued < 0:
            raise ValueError("a hash pool needs a thread and a queue of 0 or more")
        self._reactor = reactor
        self.threads = threads
        self.queued = queued
        self._runner: Runner | None = runner
        self._order = itertools.count()
        self._running: dict[Hashable, int] = {}
        #: Hashes started for each key in the pool, since it came.
        self._started: dict[Hashable, int] = {}
        self._waiting: dict[Hashable, deque[_Job]] = {}
        self._runningCount = 0
        self._waitingCount = 0

    def __repr__(self) -> str:
        return (
            f"<HashPool {self._runningCount}/{self.threads} running,"
            f" {self._waitingCount}/{self.queued} waiting>"
        )

    def stop(self) -> None:
        """
        Stop the threads, once the hashes running have finished (the
        reactor's shutdown does it too); a later L{run} starts them again.
        """
        stop = getattr(self._runner, "stop", None)
        if stop is not None:
            stop()

    def run(self, key: Hashable, f: Callable[..., _T], *args: object) -> Deferred[_T]:
        job = _Job(key, lambda: f(*args), Deferred(self._cancel), next(self._order))
        if self._runningCount < self.threads:
            self._start(job)
        elif self._waitingCount < self.queued or self._pushOut(key):
            self._waiting.setdefault(key, deque()).append(job)
            self._waitingCount += 1
        else:
            job.deferred.errback(KeycardDenied(BUSY))
        return job.deferred

    def _inPool(self, key: Hashable) -> int:
        return self._running.get(key, 0) + len(self._waiting.get(key, ()))

    def _pushOut(self, key: Hashable) -> bool:
        """
        Refuse the newest waiting hash of the busiest key, if C{key} has
        fewer in the pool.

        @return: whether a place was freed.
        """
        if not self._waiting:
            return False
        busiest = max(self._waiting, key=self._inPool)
        if self._inPool(key) >= self._inPool(busiest):
            return False
        job = self._unqueue(busiest, -1)
        self._forget(busiest)
        job.deferred.errback(KeycardDenied(BUSY))
        return True

    def _unqueue(self, key: Hashable, index: int) -> _Job:
        jobs = self._waiting[key]
        job = jobs.pop() if index == -1 else jobs.popleft()
        if not jobs:
            del self._waiting[key]
        self._waitingCount -= 1
        return job

    def _forget(self, key: Hashable) -> None:
        """
        Forget what a key had started, once it has nothing in the pool.
        """
        if key not in self._running and key not in self._waiting:
            self._started.pop(key, None)

    def _start(self, job: _Job) -> None:
        self._runningCount += 1
        self._running[job.key] = self._running.get(job.key, 0) + 1
        self._started[job.key] = self._started.get(job.key, 0) + 1
        if self._runner is None:
            reactor = self._reactor
            if reactor is None:
                from twisted.internet import reactor
            self._runner = _ThreadRunner(reactor, self.threads)
        d = self._runner(job.call)
        d.addBoth(self._finished, job)

    def _finished(self, result: object, job: _Job) -> None:
        self._runningCount -= 1
        left = self._running[job.key] - 1
        if left:
            self._running[job.key] = left
        else:
            del self._running[job.key]
        if self._waiting:
            # The key with the fewest hashes started, then the oldest hash.
            key = min(
                self._waiting,
                key=lambda k: (self._started.get(k, 0), self._waiting[k][0].order),
            )
            self._start(self._unqueue(key, 0))
        self._forget(job.key)
        if job.deferred.called:
            return
        if isinstance(result, Failure):
            job.deferred.errback(result)
        else:
            job.deferred.callback(result)

    def _cancel(self, d: Deferred[Any]) -> None:
        """
        A waiting hash that is cancelled leaves the queue; a running one
        finishes, and its result is dropped.
        """
        for key, jobs in list(self._waiting.items()):
            for job in jobs:
                if job.deferred is d:
                    jobs.remove(job)
                    if not jobs:
                        del self._waiting[key]
                    self._waitingCount -= 1
                    self._forget(key)
                    return
