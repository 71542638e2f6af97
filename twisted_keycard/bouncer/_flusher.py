"""
Flushing a store: expired keycards, revocations and failed logins removed
on a timer.
"""

from __future__ import annotations

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from twisted_keycard.store._interfaces import (
    IKeycardStore,
    IRevocationStore,
    IThrottleStore,
)


@attrs.frozen
class Flushed:
    """
    What one flush removed.

    @ivar keycards: expired keycard records.
    @ivar revocations: revocations past their expiry.
    @ivar failures: failed-login records older than the throttling window.
    """

    keycards: int = 0
    revocations: int = 0
    failures: int = 0


class Flusher:
    """
    Removes the expired entries of a store now and every C{interval}
    seconds while started.
    """

    log = Logger()

    def __init__(
        self,
        store: IKeycardStore,
        clock: IReactorTime,
        interval: float,
        failureWindow: float | None = None,
    ) -> None:
        """
        @param failureWindow: the throttling window: failed logins older
            than this are no longer counted, and are forgotten; C{None}
            when this bouncer does not throttle (and so does not know which
            failures still count).
        """
        self.store = store
        self.clock = clock
        self.interval = interval
        self.failureWindow = failureWindow
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

    def flush(self) -> Deferred[Flushed]:
        """
        Remove expired keycards and revocations, and failed logins older
        than the throttling window, from the store.

        @return: a L{Deferred} firing with what was removed.
        """
        return Deferred.fromCoroutine(self._flush())

    async def _flush(self) -> Flushed:
        now = self.clock.seconds()
        keycards = await self.store.flushExpired(now)
        revocations = failures = 0
        if IRevocationStore.providedBy(self.store):
            revocations = await self.store.flushRevocations(now)
        if self.failureWindow is not None and IThrottleStore.providedBy(self.store):
            failures = await self.store.flushFailures(now - self.failureWindow)
        flushed = Flushed(keycards, revocations, failures)
        if flushed != Flushed():
            self.log.info(
                "flushed {keycards} expired keycard(s), {revocations}"
                " revocation(s), {failures} failed login(s)",
                keycards=keycards,
                revocations=revocations,
                failures=failures,
            )
        return flushed
