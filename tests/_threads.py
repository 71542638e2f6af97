"""
Stand-ins for a reactor's thread pool in unit tests: no threads, no
reactor running.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred


def inline(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """
    Run the call at once, in this thread.
    """
    return maybeDeferred(f, *args)


class QueuedThread:
    """
    Takes calls as a thread pool would and runs them only when told, so a
    test sees what happens on the reactor thread in between.

    @ivar calls: the functions queued and not run yet.
    """

    def __init__(self) -> None:
        self._queue: list[
            tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]
        ] = []

    def __call__(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self._queue.append((f, args, d))
        return d

    @property
    def calls(self) -> list[Callable[..., Any]]:
        return [f for f, _, _ in self._queue]

    def runOne(self) -> None:
        """
        Run the first queued call.
        """
        f, args, d = self._queue.pop(0)
        maybeDeferred(f, *args).chainDeferred(d)

    def runAll(self) -> None:
        """
        Run every queued call, and those queued meanwhile, in order.
        """
        while self._queue:
            self.runOne()
