"""
Renewal of the keycards a requester's clients hold: while a client stays
connected, its keycards are renewed through the bouncer's C{keepAlive}, so
that a long PB session does not end when a keycard's duration does.  The
bouncer's C{maxLifetime} still bounds each keycard, and an expiry or a
revocation still drops the client at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from twisted_keycard._printable import printable
from twisted_keycard.bouncer._interfaces import IBouncer

#: The part of the shortest held keycard's duration between two renewals,
#: by default: a keycard renewed late by a slow bouncer still has two
#: thirds of its duration left.
RENEW_FRACTION = 1 / 3


def checkRenewEvery(renewEvery: float | None) -> None:
    """
    @raise ValueError: unless C{renewEvery} is C{None} or a positive, finite
        number of seconds.
    """
    if renewEvery is not None and not (math.isfinite(renewEvery) and renewEvery > 0):
        raise ValueError("renewEvery must be a positive number of seconds")


class Renewal:
    """
    Renews, every C{every} seconds (by default a third of the shortest
    duration among them), every keycard that a requester's clients hold.
    Its one timer runs only while a keycard is held.
    """

    log = Logger()

    def __init__(
        self,
        bouncer: IBouncer,
        requesterName: str,
        clock: Callable[[], IReactorTime],
        held: Collection[str],
        every: float | None = None,
    ) -> None:
        """
        @param clock: gives the clock that times renewals, when first
            needed.
        @param held: the ids of the keycards the clients hold, kept up to
            date by the requester.
        @param every: seconds between renewals; C{None} for a third of the
            shortest duration the bouncer gave the held keycards.
        """
        checkRenewEvery(every)
        self._bouncer = bouncer
        self._requesterName = requesterName
        self._clock = clock
        self._held = held
        self._every = every
        #: The durations of the held keycards, by id (pruned at each renewal).
        self._durations: dict[str, float] = {}
        #: The shortest duration of a held keycard, as last known.
        self._shortest: float | None = None
        self._call: IDelayedCall | None = None
        self._renewing = False

    def period(self) -> float | None:
        """
        Seconds from one renewal to the next; C{None} when no held keycard
        has a known duration.
        """
        if self._every is not None:
            return self._every
        if self._shortest is None:
            return None
        return self._shortest * RENEW_FRACTION

    def issued(self, keycardId: str, duration: float | None) -> None:
        """
        A client was given keycard C{keycardId}, valid for C{duration}
        seconds: renew it while the client holds it.
        """
        if duration is not None and math.isfinite(duration) and duration > 0:
            self._durations[keycardId] = duration
            if self._shortest is None or duration < self._shortest:
                self._shortest = duration
        self._schedule()

    def released(self) -> None:
        """
        Keycards left their clients: once none is held, stop the timer.
        """
        if self._held:
            return
        self._durations.clear()
        self._shortest = None
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def _schedule(self) -> None:
        """
        Set the timer for the next renewal, or bring it forward for a
        keycard with a shorter duration.
        """
        period = self.period()
        if period is None or self._renewing or not self._held:
            return
        clock = self._clock()
        if self._call is not None:
            if self._call.getTime() <= clock.seconds() + period:
                return
            self._call.cancel()
        self._call = clock.callLater(period, self._tick)

    def _tick(self) -> None:
        self._call = None
        held = list(self._held)
        if not held:
            return
        # Forget the durations of keycards no longer held.
        self._durations = {k: self._durations[k] for k in held if k in self._durations}
        self._shortest = min(self._durations.values(), default=None)
        self._renewing = True
        Deferred.fromCoroutine(self._renew(held))

    async def _renew(self, keycardIds: list[str]) -> None:
        try:
            await self._bouncer.keepAlive(self._requesterName, keycardIds)
        except Exception as e:
            # The keycards keep the rest of their duration; the next
            # renewal may reach the bouncer.
            self.log.warn(
                "could not renew {count} keycard(s): {error}",
                count=len(keycardIds),
                error=printable(str(e)),
            )
        finally:
            self._renewing = False
            self._schedule()
