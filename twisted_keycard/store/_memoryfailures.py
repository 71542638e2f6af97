"""
Failed logins and the reservations of logins in progress, in memory: the
part of L{twisted_keycard.store.MemoryStore} that throttling reads.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Mapping, Sequence

import attrs

#: Failures kept per key, at most: no limit is set higher.
FAILURES_KEPT = 10_000


@attrs.define
class MemoryFailures:
    """
    Times of failures by key, oldest first, and unsettled reservations.
    """

    _failures: dict[str, deque[float]] = attrs.field(factory=dict)
    _reservations: dict[str, tuple[Sequence[str], float]] = attrs.field(factory=dict)
    _reservedByKey: dict[str, dict[str, float]] = attrs.field(factory=dict)

    def record(self, keys: Sequence[str], when: float) -> None:
        for key in keys:
            times = self._failures.setdefault(key, deque(maxlen=FAILURES_KEPT))
            if times and times[-1] > when:
                # A settled reservation is dated when it was made: keep the
                # times in order.
                if len(times) == times.maxlen:
                    times.popleft()
                times.insert(bisect.bisect_right(times, when), when)
            else:
                times.append(when)

    def since(self, key: str, since: float) -> int:
        times = self._failures.get(key, ())
        return len(times) - bisect.bisect_right(times, since)

    def reservedSince(self, key: str, since: float) -> int:
        return sum(1 for t in self._reservedByKey.get(key, {}).values() if t > since)

    def reserve(
        self, reservationId: str, limits: Mapping[str, int], since: float, when: float
    ) -> bool:
        for key, limit in limits.items():
            if self.since(key, since) + self.reservedSince(key, since) >= limit:
                return False
        self._reservations[reservationId] = (tuple(limits), when)
        for key in limits:
            self._reservedByKey.setdefault(key, {})[reservationId] = when
        return True

    def settle(self, reservationId: str, failed: bool) -> None:
        found = self._reservations.pop(reservationId, None)
        if found is None:
            return
        keys, when = found
        self._unreserve(reservationId, keys)
        if failed:
            self.record(keys, when)

    def _unreserve(self, reservationId: str, keys: Sequence[str]) -> None:
        for key in keys:
            reserved = self._reservedByKey[key]
            del reserved[reservationId]
            if not reserved:
                del self._reservedByKey[key]

    def flush(self, before: float) -> int:
        forgotten = 0
        for key in list(self._failures):
            times = self._failures[key]
            while times and times[0] <= before:
                times.popleft()
                forgotten += 1
            if not times:
                del self._failures[key]
        old = [r for r, (_, when) in self._reservations.items() if when <= before]
        for reservationId in old:
            keys, _ = self._reservations.pop(reservationId)
            self._unreserve(reservationId, keys)
        return forgotten + len(old)
