"""
The queue of a bouncer's seat pool: who asked to wait for a seat, the
signed tickets that keep their places, and what a requester asks of it
while its client waits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from twisted_keycard.bouncer._settings import SeatQueuePolicy
from twisted_keycard.error import KeycardRefused, QuotaExceeded, SeatQueued
from twisted_keycard.keycard import Keycard
from twisted_keycard.store import (
    RECONNECTED,
    SEAT,
    IStoreChanges,
    QueueLimits,
    SeatWaiter,
)
from twisted_keycard.tokens import (
    BadSignature,
    KeyringHolder,
    MalformedToken,
    QueueTicket,
    UnknownKey,
    newTicketId,
    signTicket,
    verifyTicket,
)

#: The message of the refusal of a ticket that is tampered with, expired,
#: signed by another store's keyring, or for another pool.
TICKET_REFUSED = "queue ticket refused"

_requests: WeakKeyDictionary[Keycard, SeatRequest] = WeakKeyDictionary()


@attrs.frozen
class SeatRequest:
    """
    A login that asked to wait for a seat rather than be refused.

    @ivar ticket: the checked ticket its client holds from an earlier
        queuing, if any: its place, and the seat once at the head.
    """

    ticket: QueueTicket | None = None


def waitForSeat(keycard: Keycard, ticket: QueueTicket | None = None) -> None:
    """
    Mark C{keycard}, about to be handed to an in-process bouncer, as one
    whose client waits for a seat: if its pool is full, the bouncer queues
    it (L{SeatQueued}) rather than refuse it.  Set by a requester, never
    taken from the wire.

    @param ticket: the client's ticket, checked by L{SeatQueue.verify}.
    """
    _requests[keycard] = SeatRequest(ticket)


def seatRequestOf(keycard: Keycard) -> SeatRequest | None:
    """
    What L{waitForSeat} said of C{keycard}, if anything.
    """
    return _requests.get(keycard)


@attrs.define
class SeatQueue:
    """
    The queue of one seat pool, kept in the store (an
    L{twisted_keycard.store.ISeatQueue}), with its tickets signed by the
    token keyring.

    @ivar pool: the seat pool.
    @ivar seats: its size.
    @ivar policy: the queue's bounds and grace.
    @ivar followInterval: seconds between two looks at a waiting client's
        place (its renewal, and whether a seat is free for the head).
    """

    store: Any
    clock: IReactorTime
    keys: KeyringHolder
    pool: str
    seats: int
    policy: SeatQueuePolicy
    followInterval: float = 1.0
    #: The clients waiting through this bouncer now (by their requester's
    #: key: a connection), and when the ticket of each was first queued.
    _waiting: dict[object, float] = attrs.field(factory=dict, init=False)
    #: The pauses of the clients waiting here, to end at a seat freed.
    _pauses: list[Deferred[None]] = attrs.field(factory=list, init=False)
    _unsubscribe: Callable[[], None] | None = attrs.field(default=None, init=False)

    def waitStarted(self, key: object, ticket: QueueTicket) -> None:
        """
        A client waits through this bouncer with C{ticket}, until
        L{waitEnded} with the same C{key}: it counts in L{gauges}.
        """
        self._waiting[key] = ticket.expires - self.policy.ticketLifetime

    def waitEnded(self, key: object) -> None:
        self._waiting.pop(key, None)

    def gauges(self) -> tuple[int, int, float]:
        """
        The clients waiting through this bouncer, the queue's bound, and the
        longest wait of those clients so far (since its ticket was first
        queued, on any bouncer), in seconds: 0 when none waits.
        """
        now = self.clock.seconds()
        longest = max((now - since for since in self._waiting.values()), default=0.0)
        return len(self._waiting), self.policy.size, max(longest, 0.0)

    def pause(self) -> Deferred[None]:
        """
        Wait before a waiting client's next look at its place: the follow
        interval, or, on a store that tells of seats freed
        (L{IStoreChanges}, Redis's push), until one is freed if that comes
        sooner: the head then takes it at once, and those behind learn at
        once that they moved up.  (At most the queue's bound of clients
        look, each with one renewal.)
        """
        d: Deferred[None] = Deferred()
        call = self.clock.callLater(self.followInterval, d.callback, None)
        if IStoreChanges.providedBy(self.store):
            if self._unsubscribe is None:
                self._unsubscribe = self.store.subscribe(self._changed)
            self._pauses.append(d)

        def done(result: None) -> None:
            if call.active():
                call.cancel()
            if d in self._pauses:
                self._pauses.remove(d)

        return d.addCallback(done)

    def _changed(self, kind: str) -> None:
        if kind not in (SEAT, RECONNECTED):
            return
        pauses, self._pauses = self._pauses, []
        for d in pauses:
            if not d.called:
                d.callback(None)

    def stop(self) -> None:
        """
        Stop hearing of the store's changes (the bouncer stopped).
        """
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    @property
    def limits(self) -> QueueLimits:
        """
        The store's bounds of this queue.
        """
        policy = self.policy
        return QueueLimits(policy.size, policy.perAvatar, policy.perAddress)

    def owns(self, avatarId: str, ticket: QueueTicket) -> bool:
        """
        Whether C{ticket} keeps a place for a login of C{avatarId}: it is
        for this pool and that avatar.
        """
        return (ticket.pool, ticket.avatarId) == (self.pool, avatarId)

    def ticketFor(self, avatarId: str, ticket: QueueTicket | None) -> QueueTicket:
        """
        The ticket a login of C{avatarId} waits with: the client's own if
        it is for this pool and avatar, else a new one.
        """
        if ticket is not None and self.owns(avatarId, ticket):
            return ticket
        return QueueTicket(
            self.pool,
            newTicketId(),
            avatarId,
            self.clock.seconds() + self.policy.ticketLifetime,
        )

    async def join(
        self, avatarId: str, address: str | None, ticket: QueueTicket | None
    ) -> SeatQueued:
        """
        Queue a login of C{avatarId} that found the pool full (or keep its
        place, with the client's C{ticket}).

        @return: the L{SeatQueued} denial to raise, with the signed ticket
            and the place.
        @raise QuotaExceeded: if the queue is full, or the avatar or the
            address holds its share of it.
        """
        ticket = self.ticketFor(avatarId, ticket)
        now = self.clock.seconds()
        waiter = SeatWaiter(
            ticket.ticketId, self.pool, avatarId, address, now + self.policy.grace
        )
        place, waiting = await self.store.joinQueue(waiter, now, self.limits)
        keyring = await self.keys.current()
        return SeatQueued(
            f"waiting for a seat in pool {self.pool!r}: place {place} of {waiting}",
            signTicket(ticket, keyring.signing),
            place,
            waiting,
        )

    async def verify(self, text: object) -> QueueTicket:
        """
        Check a ticket a client presents.

        @raise KeycardRefused: if it is malformed, tampered with, expired,
            signed by a key this store's keyring does not hold, or for
            another pool.
        """
        keyring = await self.keys.current()
        now = self.clock.seconds()
        try:
            try:
                ticket = verifyTicket(text, keyring, now)
            except UnknownKey as e:
                # Another bouncer of the store may have rotated.
                keyring = await self.keys.reloadFor(e.args[-1] if e.args else "")
                ticket = verifyTicket(text, keyring, now)
        except (MalformedToken, BadSignature, UnknownKey):
            raise KeycardRefused(TICKET_REFUSED) from None
        if ticket.pool != self.pool:
            raise KeycardRefused(TICKET_REFUSED)
        return ticket

    async def renew(self, ticket: QueueTicket) -> tuple[int, int]:
        """
        Keep a waiting client's place for the grace from now.

        @return: its place and the number waiting.
        @raise QuotaExceeded: (C{limit} C{"lapsed"}) if it is no longer
            queued: its place lapsed, or it got its seat.
        """
        now = self.clock.seconds()
        moved: tuple[int, int] | None = await self.store.renewPlace(
            self.pool, ticket.ticketId, now + self.policy.grace, now
        )
        if moved is None:
            raise QuotaExceeded(
                f"the place in the queue of pool {self.pool!r} lapsed", "lapsed"
            )
        return moved

    async def seatFree(self) -> bool:
        """
        Whether a seat of the pool is free now.
        """
        taken: int = await self.store.seatsTaken(self.pool, self.clock.seconds())
        return taken < self.seats

    async def leave(self, ticket: QueueTicket) -> bool:
        """
        Give up a place.

        @return: whether it was queued.
        """
        left: bool = await self.store.leaveQueue(self.pool, ticket.ticketId)
        return left
