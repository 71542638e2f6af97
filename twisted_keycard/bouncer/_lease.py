"""
A running bouncer's lease on the keycards it holds, so that the seats of a
bouncer that was killed are freed once its lease runs out.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Collection

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from twisted_keycard._printable import printable
from twisted_keycard.store._interfaces import ILeaseStore


def newHolderId(bouncerName: str) -> str:
    """
    A lease id for one bouncer instance: its name, for the operator, and
    randomness, so that two processes (or a restart) never share one.
    """
    return f"{bouncerName}:{secrets.token_urlsafe(12)}"


@attrs.define
class Lease:
    """
    The lease, in an L{ILeaseStore}, under which a bouncer holds the
    keycards it issues or adopts while it runs.  Each renewal extends it by
    C{leaseTime} and releases the keycards of other bouncers' leases that
    ran out.

    @ivar holderId: the lease's id, unique to this bouncer instance.
    @ivar holding: the ids of the keycards held under the lease.
    @ivar onLost: called with those ids when the lease was lost (this
        bouncer stalled past it and another released its keycards, whose
        seats may be taken again): their clients must be dropped.
    @ivar active: whether the lease was taken.
    """

    store: ILeaseStore
    clock: IReactorTime
    holderId: str
    leaseTime: float
    holding: Callable[[], Collection[str]]
    onLost: Callable[[list[str]], Awaitable[object]]
    active: bool = False
    log = Logger()

    @property
    def heldBy(self) -> str | None:
        """
        The lease id to record in keycards held from now on, once taken.
        """
        return self.holderId if self.active else None

    async def renew(self) -> int:
        """
        Take or extend the lease, then release the keycards of lapsed ones.

        @return: how many keycards of lapsed leases were released.
        """
        held = list(self.holding())
        now = self.clock.seconds()
        onRecord = await self.store.renewLease(self.holderId, now, now + self.leaseTime)
        if self.active and not onRecord and held:
            self.log.error(
                "lease {holderId} ran out and its keycards were released:"
                " dropping their {count} client(s)",
                holderId=printable(self.holderId),
                count=len(held),
                event="lease.lost",
            )
            await self.onLost(held)
        self.active = True
        released = await self.store.releaseLapsed(now)
        if released:
            self.log.info(
                "released {count} keycard(s) held under leases that ran out",
                count=released,
                event="lease.released",
            )
        return released
