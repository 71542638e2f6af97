"""
What a bouncer does while it runs as a service: load the keyring, follow
the revocations and key rotations other processes write to a shared store,
renew its lease, share its throttle counts, and flush expired entries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from twisted_keycard._printable import printable
from twisted_keycard.bouncer._held import Lease
from twisted_keycard.bouncer._login import Throttler
from twisted_keycard.bouncer._settings import Upkeep
from twisted_keycard.store import (
    SEAT,
    IKeycardStore,
    IRevocationStore,
    IStoreChanges,
    IThrottleStore,
    Revocation,
)
from twisted_keycard.store.redis import WrongKeyEncryptionKey
from twisted_keycard.tokens import KeyringHolder, RevocationMirror

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
                self._read()
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
                self._read()
                return seen

    def _read(self) -> None:
        """
        The store was read in full, now: the mirror is current.
        """
        self.polledAt = self.clock.seconds()
        if self.mirror is not None:
            self.mirror.readAt = self.polledAt


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
    #: The last refusal of the store's secrets logged.
    _wrongKey: str | None = None
    #: When the steps began to fail, while some do.
    _failingSince: float | None = None
    #: Whether a step failed in the run of the steps under way.
    _failedNow: bool = False
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
                self._failedNow = False
                for what, step in self.steps:
                    try:
                        await step()
                    except WrongKeyEncryptionKey as e:
                        # Another host rewrapped the store's secrets: one
                        # line, not a traceback at every interval, until
                        # this host gets the new key file.
                        if self._wrongKey != str(e):
                            self._wrongKey = str(e)
                            self.log.error(
                                "{what} failed: {error}; this bouncer keeps the"
                                " keyring it loaded",
                                what=what,
                                error=str(e),
                                event="store.wrongKey",
                            )
                    except Exception as e:
                        self._failed(what, e)
                if not self._failedNow:
                    self._worked()
        finally:
            self._ticking = False

    def _failed(self, what: str, error: Exception) -> None:
        """
        One line when the steps start failing (the store is unreachable,
        or fails), naming the first that did; none while they go on
        failing: an outage is not a traceback a second.
        """
        self._failedNow = True
        if self._failingSince is not None:
            return
        self._failingSince = self.clock.seconds()
        self.log.error(
            "{what} failed: {error}; following the store again every {interval} s",
            what=what,
            error=printable(f"{type(error).__name__}: {error}"),
            interval=self.interval,
            event="store.down",
        )

    def _worked(self) -> None:
        """
        One line when every step works again after some failed.
        """
        since, self._failingSince = self._failingSince, None
        if since is not None:
            self.log.info(
                "following the store works again, after {seconds:.1f} s",
                seconds=self.clock.seconds() - since,
                event="store.up",
            )

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
    seconds while started, and the failed logins past their retention
    every C{failureInterval} seconds.
    """

    log = Logger()

    def __init__(
        self,
        store: IKeycardStore,
        clock: IReactorTime,
        interval: float,
        failureWindow: float | None = None,
        failureInterval: float | None = None,
    ) -> None:
        """
        @param failureWindow: how long the store keeps failed logins (the
            throttling window, or a longer retention, see
            L{Throttle.kept}): older ones are forgotten; C{None} when this
            bouncer does not throttle (and so does not know which failures
            still count).
        @param failureInterval: seconds between two flushes of failed
            logins (see L{Throttle.flushEvery}); C{None}: every
            C{interval}, with the expired entries.
        """
        self.store = store
        self.clock = clock
        self.interval = interval
        self.failureWindow = failureWindow
        self.failureInterval = failureInterval
        self._loops: list[LoopingCall] = []

    def start(self) -> None:
        apart = self.failureWindow is not None and self.failureInterval is not None
        self._loops = [
            self._every(
                self.interval,
                lambda: self.flush(failures=not apart),
                "flushing the store",
            )
        ]
        if apart:
            assert self.failureInterval is not None
            self._loops.append(
                self._every(
                    self.failureInterval, self.flushFailures, "forgetting failed logins"
                )
            )

    def _every(
        self, interval: float, flush: Callable[[], Deferred[Flushed]], what: str
    ) -> LoopingCall:
        loop = LoopingCall(self._logged, flush, what)
        loop.clock = self.clock
        loop.start(interval, now=True)
        return loop

    def stop(self) -> None:
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []

    def _logged(
        self, flush: Callable[[], Deferred[Flushed]], what: str
    ) -> Deferred[None]:
        d = flush()
        d.addErrback(lambda f: self.log.failure("{what} failed", f, what=what))
        return d.addCallback(lambda _: None)

    def flushFailures(self) -> Deferred[Flushed]:
        """
        Remove the failed logins older than the retention from the store.

        @return: a L{Deferred} firing with what was removed.
        """
        return Deferred.fromCoroutine(self._flushFailures())

    async def _flushFailures(self) -> Flushed:
        failures = 0
        if self.failureWindow is not None and IThrottleStore.providedBy(self.store):
            before = self.clock.seconds() - self.failureWindow
            failures = await self.store.flushFailures(before)
        if failures:
            self.log.info(
                "forgot {failures} failed login(s) past their retention",
                failures=failures,
            )
        return Flushed(failures=failures)

    def flush(self, failures: bool = True) -> Deferred[Flushed]:
        """
        Remove expired keycards and revocations, and failed logins older
        than their retention, from the store.

        @param failures: whether to remove failed logins too.
        @return: a L{Deferred} firing with what was removed.
        """
        return Deferred.fromCoroutine(self._flush(failures))

    async def _flush(self, withFailures: bool) -> Flushed:
        now = self.clock.seconds()
        keycards = await self.store.flushExpired(now)
        revocations = failures = 0
        if IRevocationStore.providedBy(self.store):
            revocations = await self.store.flushRevocations(now)
        if (
            withFailures
            and self.failureWindow is not None
            and IThrottleStore.providedBy(self.store)
        ):
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


class ServiceUpkeep:
    """
    The upkeep of a running bouncer: a L{Follower} of its revocations (a
    L{RevocationFollower}), keyring and L{Lease}, woken at once by a store
    that pushes its changes (L{IStoreChanges}), and a L{Flusher}.

    @ivar flusher: removes expired entries from the store.
    @ivar follower: follows the store while the bouncer runs.
    @ivar revocations: reads the revocations other bouncers write, once
        started.
    """

    def __init__(
        self,
        store: IKeycardStore,
        clock: IReactorTime,
        upkeep: Upkeep,
        *,
        keys: KeyringHolder | None,
        lease: Lease | None,
        mirror: RevocationMirror | None,
        revokedElsewhere: Callable[[list[Revocation]], Awaitable[None]],
        throttler: Throttler | None,
        running: Callable[[], bool],
    ) -> None:
        """
        @param revokedElsewhere: called with each batch of revocations read.
        @param throttler: the bouncer's throttle, if it has one: it shares
            its counts at each follow interval.
        @param running: whether the bouncer still runs, asked once the
            first reads are done.
        """
        self.store = store
        self.clock = clock
        self._upkeep = upkeep
        self.keys = keys
        self.lease = lease
        self._mirror = mirror
        self._revokedElsewhere = revokedElsewhere
        self._running = running
        self.throttler = throttler
        self.revocations: RevocationFollower | None = None
        self.follower: Follower | None = None
        self._unsubscribe: Callable[[], None] = lambda: None
        limits = throttler.limits if throttler is not None else None
        self.flusher = Flusher(
            store,
            clock,
            upkeep.flushInterval,
            limits.kept if limits is not None else None,
            limits.flushEvery if limits is not None else None,
        )

    def followLag(self) -> float | None:
        """
        Seconds since the revocations were last read, while followed.
        """
        follower = self.revocations
        if self.follower is None or follower is None or follower.polledAt is None:
            return None
        return self.clock.seconds() - follower.polledAt

    async def start(self) -> None:
        """
        Load the keyring, read every revocation in force and renew the lease,
        then, if the bouncer still runs, follow and flush the store.
        """
        steps: list[tuple[str, Callable[[], Awaitable[object]]]] = []
        if self.keys is not None:
            await self.keys.current()
        if IRevocationStore.providedBy(self.store):
            revocations = RevocationFollower(
                self.store, self.clock, self._revokedElsewhere, mirror=self._mirror
            )
            await revocations.catchUp()
            self.revocations = revocations
            if self._mirror is not None and self._running():
                # Every revocation in force is read, and followed from now
                # on: tokens are checked in memory (see RevocationMirror).
                self._mirror.followed = True
            steps.append(("following revocations", revocations.poll))
        if self.keys is not None:
            steps.append(("following the keyring", self.keys.follow))
        if self.lease is not None:
            await self.lease.renew()
            steps.append(("renewing the lease", self.lease.renew))
        if self.throttler is not None:
            await self.throttler.start()
            steps.append(("sharing the throttle counts", self.throttler.share))
        if not self._running():
            if self.throttler is not None:
                # Stopped while starting: nothing would share what it keeps.
                await self.throttler.stop()
            return
        if steps:
            follower = self.follower = Follower(
                self.clock, self._upkeep.followInterval, steps
            )
            follower.start()
            if IStoreChanges.providedBy(self.store):
                # Pushed changes are read at once, not at the next interval.
                # A seat freed is the seat queue's (see SeatQueue).
                self._unsubscribe = self.store.subscribe(
                    lambda kind: None if kind == SEAT else follower.wake()
                )
        self.flusher.start()

    def stop(self) -> Deferred[None]:
        """
        Stop following and flushing the store, and send the throttle counts
        not sent yet.

        @return: a L{Deferred} firing once the store has them.
        """
        self._unsubscribe()
        self._unsubscribe = lambda: None
        if self._mirror is not None:
            # No longer followed, the mirror would grow stale.
            self._mirror.followed = False
        if self.follower is not None:
            self.follower.stop()
            self.follower = None
        self.flusher.stop()
        if self.throttler is None:
            return succeed(None)
        return self.throttler.stop()
