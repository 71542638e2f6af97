"""
Following what other processes change in a shared store: the revocations
they record, so that each bouncer drops the clients of keycards revoked
elsewhere, and, as further steps of each tick, the keyring and the leases.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from twisted_keycard.bouncer._mirror import RevocationMirror
from twisted_keycard.store._interfaces import IRevocationStore
from twisted_keycard.store._records import Revocation

#: Revocations read from the store in one poll, at most.
FOLLOW_BATCH = 1000


@attrs.define
class RevocationFollower:
    """
    Polls a revocation store for revocations recorded after the last one
    seen (by the store's cursor, a row id for SQLite) and hands them to
    C{onRevoked}, and every batch read, empty or not, to the C{mirror} of
    the revocations in force.

    @ivar polledAt: when the store was last read in full, or C{None}.
    """

    store: IRevocationStore
    clock: IReactorTime
    onRevoked: Callable[[list[Revocation]], Awaitable[object]]
    cursor: int = 0
    polledAt: float | None = None
    mirror: RevocationMirror | None = None

    async def catchUp(self) -> None:
        """
        Read every revocation already recorded into the mirror, without
        handing them to C{onRevoked}: a starting bouncer holds no keycard
        they could concern, but the tokens they refuse may be presented.
        """
        while True:
            batch, self.cursor = await self.store.revokedSince(
                self.cursor, FOLLOW_BATCH
            )
            if self.mirror is not None:
                self.mirror.update(batch)
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
            if self.mirror is not None:
                self.mirror.update(batch)
            if batch:
                await self.onRevoked(batch)
            if len(batch) < FOLLOW_BATCH:
                self.polledAt = self.clock.seconds()
                return seen


@attrs.define
class Follower:
    """
    Runs the steps that follow a shared store (read the revocations, the
    keyring's version, renew the lease), in order, every C{interval}
    seconds while started.  A step that fails is logged; the next ones
    still run.

    @ivar steps: what each step does, as a failure would name it, and the
        step.
    """

    clock: IReactorTime
    interval: float
    steps: list[tuple[str, Callable[[], Awaitable[object]]]]
    _loop: LoopingCall | None = None
    _ticking: bool = False
    _again: bool = False
    log = Logger()

    def start(self) -> None:
        loop = self._loop = LoopingCall(lambda: Deferred.fromCoroutine(self.tick()))
        loop.clock = self.clock
        loop.start(self.interval, now=False)

    async def tick(self) -> None:
        """
        Run the steps.  Called while they run, it runs them once more after,
        never two at once.
        """
        if self._ticking:
            self._again = True
            return
        self._ticking = self._again = True
        try:
            while self._again:
                self._again = False
                for what, step in self.steps:
                    try:
                        await step()
                    except Exception:
                        self.log.failure("{what} failed", what=what)
        finally:
            self._ticking = False

    def wake(self) -> None:
        """
        Run the steps now, not at the next interval: the store pushed a
        change (see L{twisted_keycard.store.IStoreChanges}).
        """
        if self._loop is not None:
            Deferred.fromCoroutine(self.tick())

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
