"""
The bouncer as a service: what it starts and stops, and the upkeep of the
store (following other bouncers' revocations, flushing expired entries).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from twisted_keycard.bouncer._revocations import RevocationFollower
from twisted_keycard.bouncer._timers import ExpiryTimers
from twisted_keycard.store._interfaces import IKeycardStore, IRevocationStore
from twisted_keycard.store._records import Revocation
from twisted_keycard.tokens._holder import KeyringHolder


class BouncerUpkeep(Service):
    """
    Mixin of L{twisted_keycard.bouncer.Bouncer}: its service life.
    """

    log: Logger
    name: str
    store: IKeycardStore
    clock: IReactorTime
    keys: KeyringHolder | None
    followInterval: float
    flushInterval: float
    started: Deferred[None]
    _timers: ExpiryTimers
    _follower: RevocationFollower | None = None
    _flushLoop: LoopingCall | None = None
    _revokedElsewhere: Callable[[list[Revocation]], Awaitable[None]]

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.started = Deferred.fromCoroutine(self._start())
        self.started.addErrback(
            lambda f: self.log.failure(
                "bouncer {name} failed to start", f, name=self.name
            )
        )

    async def _start(self) -> None:
        if self.keys is not None:
            await self.keys.current()
        if IRevocationStore.providedBy(self.store):
            follower = RevocationFollower(
                self.store, self.clock, self._revokedElsewhere, self.followInterval
            )
            await follower.catchUp()
            if self.running:
                self._follower = follower
                follower.start()
        if self.running:
            loop = self._flushLoop = LoopingCall(self._flushNow)
            loop.clock = self.clock
            loop.start(self.flushInterval, now=True)

    def stopService(self) -> Deferred[None] | None:
        if self._follower is not None:
            self._follower.stop()
            self._follower = None
        if self._flushLoop is not None and self._flushLoop.running:
            self._flushLoop.stop()
        self._flushLoop = None
        self._timers.stop()
        result: Deferred[None] | None = super().stopService()  # type: ignore[no-untyped-call]
        return result

    def _flushNow(self) -> Deferred[None]:
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
