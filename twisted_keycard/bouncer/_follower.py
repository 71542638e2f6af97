"""
Following the revocations other bouncers record in a shared store, so that
each bouncer drops the clients of keycards revoked elsewhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from twisted_keycard.store._interfaces import IRevocationStore
from twisted_keycard.store._records import Revocation

#: Revocations read from the store in one poll, at most.
FOLLOW_BATCH = 1000


@attrs.define
class RevocationFollower:
    """
    Polls a revocation store for revocations recorded after the last one
    seen (by the store's cursor, a row id for SQLite) and hands them to
    C{onRevoked}.

    @ivar polledAt: when the store was last read in full, or C{None}.
    """

    store: IRevocationStore
    clock: IReactorTime
    onRevoked: Callable[[list[Revocation]], Awaitable[object]]
    interval: float = 1.0
    cursor: int = 0
    polledAt: float | None = None
    _loop: LoopingCall | None = None
    log = Logger()

    async def catchUp(self) -> None:
        """
        Skip every revocation already recorded: a starting bouncer holds no
        keycard they could concern.
        """
        while True:
            batch, self.cursor = await self.store.revokedSince(
                self.cursor, FOLLOW_BATCH
            )
            if len(batch) < FOLLOW_BATCH:
                self.polledAt = self.clock.seconds()
                return

    async def poll(self) -> int:
        """
        Read and hand over the revocations recorded since the last poll.

        @return: how many were read.
        """
        seen = 0
        while True:
            batch, self.cursor = await self.store.revokedSince(
                self.cursor, FOLLOW_BATCH
            )
            seen += len(batch)
            if batch:
                await self.onRevoked(batch)
            if len(batch) < FOLLOW_BATCH:
                self.polledAt = self.clock.seconds()
                return seen

    def start(self) -> None:
        loop = self._loop = LoopingCall(self._tick)
        loop.clock = self.clock
        loop.start(self.interval, now=False)

    def _tick(self) -> Deferred[None]:
        d = Deferred.fromCoroutine(self.poll())
        d.addErrback(lambda f: self.log.failure("following revocations failed", f))
        return d.addCallback(lambda _: None)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
