"""
What a bouncer does while it runs as a service: load the keyring, read the
revocations in force, renew its lease, then follow the store (revocations
other bouncers write, the keyring's version, the lease) and flush it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from twisted.internet.interfaces import IReactorTime

from twisted_keycard.bouncer._flusher import Flusher
from twisted_keycard.bouncer._follower import Follower, RevocationFollower
from twisted_keycard.bouncer._lease import Lease
from twisted_keycard.bouncer._mirror import RevocationMirror
from twisted_keycard.bouncer._policy import Upkeep
from twisted_keycard.store._changes import IStoreChanges
from twisted_keycard.store._interfaces import IKeycardStore, IRevocationStore
from twisted_keycard.store._records import Revocation
from twisted_keycard.tokencard import TokenChecker
from twisted_keycard.tokens._holder import KeyringHolder


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
        tokenChecker: TokenChecker | None,
        revokedElsewhere: Callable[[list[Revocation]], Awaitable[None]],
        throttleWindow: float | None,
        running: Callable[[], bool],
    ) -> None:
        """
        @param revokedElsewhere: called with each batch of revocations read.
        @param throttleWindow: how long failed logins are kept, if counted.
        @param running: whether the bouncer still runs, asked once the
            first reads are done.
        """
        self.store = store
        self.clock = clock
        self._upkeep = upkeep
        self.keys = keys
        self.lease = lease
        self._mirror = mirror
        self._tokenChecker = tokenChecker
        self._revokedElsewhere = revokedElsewhere
        self._running = running
        self.revocations: RevocationFollower | None = None
        self.follower: Follower | None = None
        self._unsubscribe: Callable[[], None] = lambda: None
        self.flusher = Flusher(store, clock, upkeep.flushInterval, throttleWindow)

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
            if self._tokenChecker is not None and self._running():
                # Every revocation in force is read: tokens are checked in
                # memory from now on (see RevocationMirror).
                self._tokenChecker.mirror = self._mirror
            steps.append(("following revocations", revocations.poll))
        if self.keys is not None:
            steps.append(("following the keyring", self.keys.follow))
        if self.lease is not None:
            await self.lease.renew()
            steps.append(("renewing the lease", self.lease.renew))
        if not self._running():
            return
        if steps:
            follower = self.follower = Follower(
                self.clock, self._upkeep.followInterval, steps
            )
            follower.start()
            if IStoreChanges.providedBy(self.store):
                # Pushed changes are read at once, not at the next interval.
                self._unsubscribe = self.store.subscribe(lambda kind: follower.wake())
        self.flusher.start()

    def stop(self) -> None:
        """
        Stop following and flushing the store.
        """
        self._unsubscribe()
        self._unsubscribe = lambda: None
        if self._tokenChecker is not None:
            # No longer followed, the mirror would grow stale.
            self._tokenChecker.mirror = None
        if self.follower is not None:
            self.follower.stop()
            self.follower = None
        self.flusher.stop()
