"""
Writes that may wait for Redis: while the store is unreachable, the record
of a keycard issued after a password login (and its removal, release,
failed-login counts) is queued, up to a bound, and written in order once
Redis is back; other writes fail.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_keycard.store.redis._connection import StoreUnavailable

#: Writes queued at most while Redis is unreachable.
QUEUE_LIMIT = 10_000

Write = Callable[[], Deferred[object]]


@attrs.define
class WriteQueue:
    """
    Writes waiting for Redis, oldest first.

    @ivar limit: how many may wait; past that, a write fails with
        L{StoreUnavailable}.
    @ivar draining: whether queued writes are being sent: writes made
        meanwhile are queued behind them, so that they land in order.
    """

    limit: int = QUEUE_LIMIT
    draining: bool = False
    _writes: deque[tuple[str, Write]] = attrs.field(factory=deque)
    log = Logger()

    def __len__(self) -> int:
        return len(self._writes)

    def add(self, what: str, write: Write) -> Deferred[None]:
        """
        Queue C{write}, described as C{what} for the log.

        @return: a L{Deferred} firing at once with C{None}, or failing with
            L{StoreUnavailable} when the queue is full.
        """
        if len(self._writes) >= self.limit:
            self.log.error(
                "the Redis store is unreachable and {count} writes wait:"
                " refusing {what}",
                count=len(self._writes),
                what=what,
                event="store.queue.full",
            )
            return fail(StoreUnavailable("the Redis store is unreachable"))
        if not self._writes and not self.draining:
            self.log.warn(
                "the Redis store is unreachable: queueing {what} and later writes",
                what=what,
                event="store.queue.started",
            )
        self._writes.append((what, write))
        return succeed(None)

    def writeOrQueue(self, up: bool, what: str, write: Write) -> Deferred[Any]:
        """
        Write now, or queue the write while Redis is unreachable (C{up} is
        false, or the write fails with L{StoreUnavailable}) or queued writes
        are still being sent, so that writes land in order.
        """
        if not up or len(self) or self.draining:
            return self.add(what, write)

        def lost(failure: Failure) -> Deferred[None]:
            failure.trap(StoreUnavailable)
            return self.add(what, write)

        return write().addErrback(lost)

    async def drain(self) -> int:
        """
        Send the queued writes in order.  One that fails for another reason
        than Redis being unreachable (a keycard recorded meanwhile) is
        logged and dropped; if Redis is lost again, the rest stay queued.

        @return: how many were sent.
        """
        if self.draining:
            return 0
        self.draining = True
        sent = 0
        try:
            while self._writes:
                what, write = self._writes[0]
                try:
                    await write()
                except StoreUnavailable:
                    return sent
                except Exception:
                    self.log.failure("a queued write ({what}) failed", what=what)
                self._writes.popleft()
                sent += 1
        finally:
            self.draining = False
        if sent:
            self.log.info(
                "the Redis store is back: wrote {count} queued writes",
                count=sent,
                event="store.queue.drained",
            )
        return sent
