"""
Flushing a store: expired keycards and revocations removed on a timer.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from twisted_keycard.store._interfaces import IKeycardStore, IRevocationStore


class Flusher:
    """
    Removes the expired entries of a store now and every C{interval}
    seconds while started.
    """

    log = Logger()

    def __init__(
        self, store: IKeycardStore, clock: IReactorTime, interval: float
    ) -> None:
        self.store = store
        self.clock = clock
        self.interval = interval
        self._loop: LoopingCall | None = None

    def start(self) -> None:
        loop = self._loop = LoopingCall(self._flushLogged)
        loop.clock = self.clock
        loop.start(self.interval, now=True)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def _flushLogged(self) -> Deferred[None]:
        d = self.flush()
        d.addErrback(lambda f: self.log.failure("flushing the store failed", f))
        return d.addCallback(lambda _: None)

    def flush(self) -> Deferred[tuple[int, int]]:
        """
        Remove expired keycards and revocations from the store.

        @return: a L{Deferred} firing with the numbers of keycards and of
            revocations removed.
        """
        return Deferred.fromCoroutine(self._flush())

    async def _flush(self) -> tuple[int, int]:
        now = self.clock.seconds()
        keycards = await self.store.flushExpired(now)
        revocations = 0
        if IRevocationStore.providedBy(self.store):
            revocations = await self.store.flushRevocations(now)
        if keycards or revocations:
            self.log.info(
                "flushed {keycards} expired keycard(s), {revocations} revocation(s)",
                keycards=keycards,
                revocations=revocations,
            )
        return keycards, revocations
