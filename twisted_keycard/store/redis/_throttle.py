"""
Failed logins and reservations in Redis: the part of
L{twisted_keycard.store.redis.RedisStore} that throttling reads.

While Redis is unreachable, reservations are counted in this process
alone (a password login must still be throttled), and the failures they
settle into are queued for Redis.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from twisted_keycard.store._memoryfailures import MemoryFailures
from twisted_keycard.store.redis import _throttlelua as lua
from twisted_keycard.store.redis._codec import number
from twisted_keycard.store.redis._connection import (
    FLUSH_BATCH,
    RedisConnection,
    Script,
    StoreUnavailable,
)
from twisted_keycard.store.redis._queue import WriteQueue

_RECORD = Script(lua.RECORD_FAILURE)
_SINCE = Script(lua.FAILURES_SINCE)
_RESERVE = Script(lua.RESERVE)
_SETTLE = Script(lua.SETTLE)
_FLUSH = Script(lua.FLUSH_FAILURES)


class RedisFailures:
    """
    Counts of failed logins in Redis, kept C{keep} seconds (the longest
    throttling window of the bouncers sharing it).
    """

    def __init__(
        self,
        connection: RedisConnection,
        prefix: str,
        clock: IReactorTime,
        keep: float,
        queue: WriteQueue,
    ) -> None:
        self._connection = connection
        self._prefix = prefix
        self._clock = clock
        self._keep = keep
        self._queue = queue
        self._local = MemoryFailures()
        self._localReservations: dict[str, tuple[tuple[str, ...], float]] = {}

    def _ttlAndCutoff(self) -> list[str]:
        now = self._clock.seconds()
        return [str(int(self._keep) + 1), number(now - self._keep)]

    def recordFailure(self, keys: Sequence[str], when: float) -> Deferred[None]:
        keys = list(keys)
        return self._write("a failed login", self._recording(keys, when))

    def _recording(self, keys: list[str], when: float) -> Any:
        def write() -> Deferred[Any]:
            args = [self._prefix, number(when), secrets.token_hex(8)]
            return self._connection.run(_RECORD, [*args, *self._ttlAndCutoff(), *keys])

        return write

    def _write(self, what: str, write: Any) -> Deferred[None]:
        if not self._connection.up or len(self._queue) or self._queue.draining:
            return self._queue.add(what, write)
        d: Deferred[Any] = write()

        def lost(failure: Failure) -> Deferred[None]:
            failure.trap(StoreUnavailable)
            return self._queue.add(what, write)

        return d.addCallbacks(lambda _: None, lost)

    def failuresSince(
        self, keys: Sequence[str], since: float
    ) -> Deferred[dict[str, int]]:
        keys = list(keys)
        d = self._connection.run(_SINCE, [self._prefix, number(since), *keys])
        return d.addCallback(lambda counts: dict(zip(keys, counts, strict=True)))

    def reserve(
        self, reservationId: str, limits: Mapping[str, int], since: float, when: float
    ) -> Deferred[bool]:
        if not self._connection.up:
            return succeed(self._reserveHere(reservationId, limits, since, when))
        args = [self._prefix, reservationId, number(since), number(when)]
        args.append(str(int(self._keep) + 1))
        for key, limit in limits.items():
            args += [key, str(limit)]
        d = self._connection.run(_RESERVE, args)

        def lost(failure: Failure) -> bool:
            failure.trap(StoreUnavailable)
            return self._reserveHere(reservationId, limits, since, when)

        return d.addCallbacks(lambda taken: bool(taken), lost)

    def _reserveHere(
        self, reservationId: str, limits: Mapping[str, int], since: float, when: float
    ) -> bool:
        taken = self._local.reserve(reservationId, limits, since, when)
        if taken:
            self._localReservations[reservationId] = (tuple(limits), when)
        return taken

    def settle(self, reservationId: str, failed: bool) -> Deferred[None]:
        local = self._localReservations.pop(reservationId, None)
        if local is not None:
            self._local.settle(reservationId, failed)
            if not failed:
                return succeed(None)
            keys, when = local
            return self._write("a failed login", self._recording(list(keys), when))

        def write() -> Deferred[Any]:
            args = [self._prefix, reservationId, "1" if failed else "0"]
            args += [secrets.token_hex(8), *self._ttlAndCutoff()]
            return self._connection.run(_SETTLE, args)

        return self._write("a settled login", write)

    def flushFailures(self, before: float) -> Deferred[int]:
        return Deferred.fromCoroutine(self._flush(before))

    async def _flush(self, before: float) -> int:
        forgotten = self._local.flush(before)
        for reservationId, (_, when) in list(self._localReservations.items()):
            if when <= before:
                del self._localReservations[reservationId]
        while True:
            done, seen = await self._connection.run(
                _FLUSH, [self._prefix, number(before), str(FLUSH_BATCH)]
            )
            forgotten += int(done)
            if int(seen) < FLUSH_BATCH:
                return forgotten
