"""
Timers for issued keycards: one delayed call for the earliest expiry, and a
heap of the others, so holding many keycards costs no polling and expiring k
of them costs O(k log n).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: Rebuild the heap when it holds this many times more entries than live
#: timers (renewed and cancelled timers leave stale entries behind).
_STALE_FACTOR = 2
_STALE_SLACK = 64


@attrs.define
class ExpiryTimers:
    """
    Calls C{expire} with a list of ids whose time has come.

    @ivar clock: the reactor's time.
    @ivar expire: called with the ids that expired at one time.
    """

    clock: IReactorTime
    expire: Callable[[list[str]], object]
    _when: dict[str, float] = attrs.field(factory=dict)
    _heap: list[tuple[float, str]] = attrs.field(factory=list)
    _call: IDelayedCall | None = None
    _armedFor: float | None = None

    def __len__(self) -> int:
        return len(self._when)

    def __contains__(self, keycardId: object) -> bool:
        return keycardId in self._when

    def schedule(self, keycardId: str, when: float) -> None:
        """
        Expire C{keycardId} at POSIX time C{when}, replacing any earlier
        schedule for it.
        """
        self._when[keycardId] = when
        heapq.heappush(self._heap, (when, keycardId))
        if len(self._heap) > _STALE_FACTOR * len(self._when) + _STALE_SLACK:
            self._heap = [(w, k) for k, w in self._when.items()]
            heapq.heapify(self._heap)
        self._arm()

    def cancel(self, keycardId: str) -> bool:
        """
        Forget the timer of C{keycardId}.

        @return: whether it had one.
        """
        found = self._when.pop(keycardId, None) is not None
        if not self._when:
            self._heap.clear()
            self._arm()
        return found

    def stop(self) -> None:
        """
        Cancel every timer; nothing expires after this.
        """
        self._when.clear()
        self._heap.clear()
        self._arm()

    def _arm(self) -> None:
        heap = self._heap
        while heap and self._when.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        first = heap[0][0] if heap else None
        if self._call is not None:
            if first == self._armedFor:
                return
            self._call.cancel()
            self._call = None
        self._armedFor = first
        if first is not None:
            delay = max(0.0, first - self.clock.seconds())
            self._call = self.clock.callLater(delay, self._fire)

    def _fire(self) -> None:
        self._call = None
        self._armedFor = None
        now = self.clock.seconds()
        due: list[str] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, keycardId = heapq.heappop(heap)
            if self._when.get(keycardId) == when:
                del self._when[keycardId]
                due.append(keycardId)
        self._arm()
        if due:
            self.expire(due)
