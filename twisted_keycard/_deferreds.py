"""
Coroutines run at once, as far as they can go without waiting: a login
whose every step has its answer at hand (a memory store, a checker that
answers at once) finishes inside the call that started it, with no
L{Deferred} made and fired for each step on the way; one that waits (a
store's thread, a remote bouncer) goes on as L{Deferred.fromCoroutine}
runs it.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail, succeed

_T = TypeVar("_T")


def runNow(coro: Coroutine[Any, Any, _T]) -> _T | Deferred[_T]:
    """
    Run C{coro} until it ends or first waits.

    @return: its result, if it ended without waiting; a failed L{Deferred}
        if it raised (so that a caller handles a failure one way, whenever
        it comes); else a L{Deferred} for the rest of its run, which
        L{Deferred.fromCoroutine} drives from where it waits (a
        L{Deferred} awaited inside it gives its result when asked again).
    """
    try:
        coro.send(None)
    except StopIteration as end:
        result: _T = end.value
        return result
    except BaseException:
        return fail()
    return Deferred.fromCoroutine(coro)


def deferNow(coro: Coroutine[Any, Any, _T]) -> Deferred[_T]:
    """
    L{runNow}, always as a L{Deferred}: one already fired when C{coro}
    ended without waiting, so that awaiting it costs nothing more.
    """
    result = runNow(coro)
    if isinstance(result, Deferred):
        return result
    return succeed(result)
