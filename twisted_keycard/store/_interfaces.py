"""
The stores: issued keycards, revocations, failed logins, the keyring and
leases, as interfaces with the records they keep; the optional push of a
shared store; and lookups that arrive together answered by one query.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import attrs
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import Interface

from twisted_keycard.error import QuotaExceeded

if TYPE_CHECKING:
    from twisted_keycard.tokens import Keyring


class IKeycardStore(Interface):
    """
    The store of valid (issued) keycards.  Every method returns a
    L{Deferred}; a backend that can fail (a database) fails it.
    """

    def add(record: IssuedKeycard) -> Deferred[None]:
        """
        Record an L{twisted_keycard.store.IssuedKeycard}.

        @return: a L{Deferred} firing with C{None} once it is recorded.
        @raise KeyError: (as a failure) if a keycard with that id is already
            recorded.
        """

    def get(keycardId: str) -> Deferred[IssuedKeycard | None]:
        """
        @return: a L{Deferred} firing with the record for C{keycardId}, or
            C{None}.
        """

    def remove(keycardId: str) -> Deferred[IssuedKeycard | None]:
        """
        @return: a L{Deferred} firing with the removed record, or C{None} if
            there was none.
        """

    def release(keycardId: str) -> Deferred[IssuedKeycard | None]:
        """
        The client holding a keycard left, but the keycard's token stays
        valid: keep the record (for listing and revocation) with C{held}
        false and no seat, so it counts against no quota or pool.

        @return: a L{Deferred} firing with the updated record, or C{None}.
        """

    def renew(keycardId: str, expires: float) -> Deferred[IssuedKeycard | None]:
        """
        Set the expiry of a recorded keycard.

        @return: a L{Deferred} firing with the updated record, or C{None} if
            there was none.
        """

    def addWithin(
        record: IssuedKeycard,
        maxPerAvatar: int | None,
        poolSize: int | None,
        seatsPerAvatar: int | None = None,
        ticketId: str | None = None,
    ) -> Deferred[None]:
        """
        Record a keycard if, atomically, its avatar holds fewer than
        C{maxPerAvatar} keycards and, when C{record.seatPool} is set, that
        pool has fewer than C{poolSize} seats taken and the avatar holds
        fewer than C{seatsPerAvatar} of them.  Only held keycards
        that have not expired at C{record.issued} count, and, in a store
        that keeps leases (L{ILeaseStore}), not those held under a lease
        that ran out by then: they are released first.  C{None} means no
        limit.

        In a store with seat queues (L{ISeatQueue}), a pool with a
        C{poolSize} serves its queue first: a seat goes to the keycard of
        queue ticket C{ticketId} only if that ticket is at the head of the
        pool's queue (its place is then left, in the same change), and to a
        keycard with no ticket (or with a ticket no longer queued) only if
        no live waiter is queued.  Waiters whose place lapsed by
        C{record.issued} do not count.

        Several processes sharing the store never exceed any limit, and
        never grant a seat out of the queue's order.

        @param ticketId: the queue ticket this keycard is for, if any.
        @return: a L{Deferred} firing with C{None} once it is recorded, or
            failing with L{twisted_keycard.error.QuotaExceeded} whose
            C{limit} says which limit was reached (C{"avatar"},
            C{"queued"} (the ticket waits behind others), C{"pool"} (no
            seat left, or others wait for one) or C{"seats-per-avatar"},
            checked in that order).
        """

    def byParent(parentId: str) -> Deferred[list[IssuedKeycard]]:
        """
        @return: a L{Deferred} firing with a list of the records whose
            C{parentId} is C{parentId}.
        """

    def byFamily(familyId: str) -> Deferred[list[IssuedKeycard]]:
        """
        @return: a L{Deferred} firing with a list of the records whose
            C{familyId} is C{familyId}, in one indexed look-up.
        """

    def flushExpired(when: float) -> Deferred[int]:
        """
        Remove the records whose expiry is at or before C{when}.

        @return: a L{Deferred} firing with the number removed.
        """

    def byAvatar(avatarId: str) -> Deferred[list[IssuedKeycard]]:
        """
        @return: a L{Deferred} firing with a list of the records issued to
            C{avatarId}.
        """

    def byRequester(requesterName: str) -> Deferred[list[IssuedKeycard]]:
        """
        @return: a L{Deferred} firing with a list of the records issued
            through requester C{requesterName}.
        """

    def expiredBefore(when: float) -> Deferred[list[IssuedKeycard]]:
        """
        @return: a L{Deferred} firing with a list of the records whose
            expiry is at or before C{when}.
        """

    def count() -> Deferred[int]:
        """
        @return: a L{Deferred} firing with the number of records.
        """


class IRevocationStore(Interface):
    """
    The store of revoked keycard ids.  A revocation stays until the keycard
    would have expired anyway; several bouncers sharing the store see every
    revocation.
    """

    def revoke(revocations: Sequence[Revocation]) -> Deferred[int]:
        """
        Record revocations.  They are durable (on disk, for a persistent
        backend) before the L{Deferred} fires.  Revoking an id twice keeps
        the later expiry.

        @return: a L{Deferred} firing with the number of ids newly revoked.
        """

    def isRevoked(keycardId: str) -> Deferred[bool]:
        """
        @return: a L{Deferred} firing with whether C{keycardId} is revoked.
        """

    def revocationsOf(keycardIds: Sequence[str]) -> Deferred[list[Revocation]]:
        """
        The revocations of those of C{keycardIds} that are revoked, in one
        look-up.  Besides keycard ids, a revocation may be keyed
        C{avatar:<avatar id>} or C{requester:<name>}: every token issued to
        that avatar or through that requester before its C{revokedAt} is
        refused; or C{family:<family id>}: every token of that family is
        refused.

        @return: a L{Deferred} firing with a list of L{Revocation} records.
        """

    def revokedSince(cursor: int, limit: int) -> Deferred[tuple[list[Revocation], int]]:
        """
        The revocations recorded after C{cursor}, oldest first, at most
        C{limit} of them, for other processes to follow.  Start with cursor
        C{0}; pass back the cursor returned.

        @return: a L{Deferred} firing with C{(revocations, newCursor)}.
        """

    def flushRevocations(when: float) -> Deferred[int]:
        """
        Remove the revocations whose expiry is at or before C{when}.

        @return: a L{Deferred} firing with the number removed.
        """


class IThrottleStore(Interface):
    """
    The log of throttle events (failed logins and logins in progress, per
    account and per address) through which the bouncers sharing a store
    share their counts.  Each bouncer counts in its own memory and trades
    its new events for the others' in batches (see
    L{twisted_keycard.bouncer.Throttle}); the store only keeps the log.
    """

    def shareThrottle(
        source: str, events: Sequence[ThrottleEvent], cursor: int, limit: int
    ) -> Deferred[ThrottleShare]:
        """
        In one round trip: append C{events}, written by the bouncer
        C{source}, to the log; then read the events other sources appended
        after C{cursor}, oldest first, from at most C{limit} entries of the
        log (an entry holds one event, or the events of one call).  With a
        C{limit} of 0 nothing is read.  Start with cursor C{0}; pass back
        the cursor returned.

        @return: a L{Deferred} firing with a L{ThrottleShare}; or failing,
            and then no event was appended.
        """

    def flushFailures(before: float) -> Deferred[int]:
        """
        Forget the events dated at or before C{before}: no longer counted
        by any bouncer whose window is at most as long.  A store that
        forgets from the oldest written on may keep one written after a
        newer one until the next flush.

        @return: a L{Deferred} firing with the number forgotten.
        """


class IKeyringStore(Interface):
    """
    Where the keyring that signs tokens is kept, so that bouncers sharing a
    store share it, and the secret their mock challenges are made from.
    """

    def loadKeyring() -> Deferred[Keyring | None]:
        """
        @return: a L{Deferred} firing with the stored L{Keyring}, or C{None}
            if none was stored yet.
        """

    def saveKeyring(keyring: Keyring) -> Deferred[None]:
        """
        Replace the stored keyring, durably, as one change, and change its
        L{keyringVersion}.

        @return: a L{Deferred} firing with C{None} once it is stored.
        """

    def keyringVersion() -> Deferred[int]:
        """
        A number that changes whenever the keyring is saved (by any process
        sharing the store), cheap to read: bouncers poll it to follow
        rotations.

        @return: a L{Deferred} firing with the version, C{0} if no keyring
            was ever saved.
        """

    def mockSecret() -> Deferred[bytes]:
        """
        The secret that checkers make mock challenges for unknown names from
        (see L{twisted_keycard.interfaces.IMockSecretTaker}), so that
        bouncers sharing the store show one challenge for a name; made at
        random and stored on first use, by whichever bouncer comes first.

        @return: a L{Deferred} firing with the secret (32 bytes).
        """


class ILeaseStore(Interface):
    """
    Leases of the running bouncers on the keycards they hold.  A bouncer
    renews its lease while it runs; the keycards held under a lease that
    ran out (a bouncer killed, or stalled past its lease) are released, so
    their seats and per-avatar places are free again.

    Leases expire by the clocks of the bouncers that share the store: keep
    them longer than those clocks differ.
    """

    def renewLease(holderId: str, when: float, expires: float) -> Deferred[bool]:
        """
        Hold lease C{holderId} until C{expires}: take it, or extend it.

        @return: a L{Deferred} firing with C{True} if the lease was on
            record (even past its expiry, when nobody released its keycards
            yet), or C{False} if it was not: first use, or it had run out
            and its keycards were released, so its holder must drop them.
        """

    def releaseLapsed(when: float) -> Deferred[int]:
        """
        Release (as L{IKeycardStore.release} does) every held keycard whose
        lease ran out at or before C{when}, and forget those leases.

        @return: a L{Deferred} firing with the number of keycards released.
        """

    def holdUnder(keycardId: str, holderId: str) -> Deferred[IssuedKeycard | None]:
        """
        A bouncer took charge of a held keycard (after a requester
        reconnected to it): hold it under lease C{holderId} from now on.

        @return: a L{Deferred} firing with the updated record, or C{None} if
            there is none or it is no longer held (its lease ran out, or its
            client left).
        """


class ISeatQueue(Interface):
    """
    A queue per seat pool, of the clients waiting for a seat: first come,
    first served, bounded, shared by the bouncers on one store.

    A waiter is known by its queue ticket id; its place lapses at its
    C{lapses} time unless renewed before, so that a client gone for good
    gives its place up, while one that comes back within the grace (after
    a dropped connection, a bouncer restart) keeps it.  A lapsed waiter is
    forgotten by the next operation on its pool.  The seat itself is
    granted by L{IKeycardStore.addWithin} with the ticket's id, which
    serves the head of the queue first.
    """

    def joinQueue(
        waiter: SeatWaiter, when: float, limits: QueueLimits
    ) -> Deferred[tuple[int, int]]:
        """
        Queue C{waiter} at the tail of its pool's queue, if, atomically, the
        queue's live waiters (those whose place lapses after C{when}) are
        fewer than C{limits.size}, and those of its avatar and of its
        address fewer than their shares.  A ticket already queued in that
        pool keeps its place (and gets the new lapse time): joining again
        is how a client that reconnects takes its place back.

        @return: a L{Deferred} firing with the waiter's place (1 for the
            head) and the number of live waiters; or failing with
            L{twisted_keycard.error.QuotaExceeded}
            whose C{limit} is C{"queue"}, C{"queue-per-avatar"} or
            C{"queue-per-address"} (checked in that order).
        """

    def renewPlace(
        pool: str, ticketId: str, lapses: float, when: float
    ) -> Deferred[tuple[int, int] | None]:
        """
        Keep a live waiter's place until C{lapses}.

        @return: a L{Deferred} firing with its place and the number of live
            waiters, or C{None} if the ticket is not queued in C{pool} (it
            left, got its seat, or its place lapsed by C{when}).
        """

    def queuePlace(pool: str, ticketId: str, when: float) -> Deferred[int | None]:
        """
        @return: a L{Deferred} firing with the place of ticket C{ticketId}
            in C{pool}'s queue at C{when}, 1 for the head; or C{None} if it
            is not queued.
        """

    def leaveQueue(pool: str, ticketId: str) -> Deferred[bool]:
        """
        Give a place up.

        @return: a L{Deferred} firing with whether the ticket was queued.
        """

    def seatsTaken(pool: str, when: float) -> Deferred[int]:
        """
        The seats of C{pool} held at C{when}, counted as
        L{IKeycardStore.addWithin} counts them (keycards held under a lease
        that ran out by then are released first): a waiter at the head of
        the queue asks for its seat once one is free.

        @return: a L{Deferred} firing with the number of seats taken.
        """

    def waiters(pool: str, when: float) -> Deferred[list[SeatWaiter]]:
        """
        @return: a L{Deferred} firing with the live waiters of C{pool}'s
            queue at C{when}, the head first.
        """


@attrs.frozen
class SeatWaiter:
    """
    A client waiting in a seat pool's queue.

    @ivar ticketId: its queue ticket's id, unique in the pool.
    @ivar pool: the seat pool it waits for.
    @ivar avatarId: the avatar it logged in as.
    @ivar address: its address, if known: an address holds at most its
        share of the queue.
    @ivar lapses: POSIX time at which its place lapses unless renewed.
    """

    ticketId: str
    pool: str
    avatarId: str
    address: str | None
    lapses: float


@attrs.frozen
class QueueLimits:
    """
    The bounds of a seat pool's queue.

    @ivar size: live waiters the queue holds, at most.
    @ivar perAvatar: places one avatar holds, at most; C{None}, no share.
    @ivar perAddress: places one address holds, at most; C{None}, no
        share.  Waiters with no address share nothing.
    """

    size: int
    perAvatar: int | None = None
    perAddress: int | None = None


def queueRefusal(pool: str, limit: str) -> QuotaExceeded:
    """
    The refusal of a place in C{pool}'s queue, for the C{limit} reached
    (see L{ISeatQueue.joinQueue}).
    """
    what = {
        "queue": f"the queue of pool {pool!r} is full",
        "queue-per-avatar": f"too many places in the queue of pool {pool!r}"
        " for this avatar",
        "queue-per-address": f"too many places in the queue of pool {pool!r}"
        " for this address",
    }[limit]
    return QuotaExceeded(what, limit)


def queueLimitReached(
    queue: list[SeatWaiter], waiter: SeatWaiter, limits: QueueLimits
) -> str | None:
    """
    The limit of C{limits} that C{waiter} would exceed by joining C{queue}
    (live waiters), or C{None}.
    """
    if len(queue) >= limits.size:
        return "queue"
    if limits.perAvatar is not None and (
        sum(1 for w in queue if w.avatarId == waiter.avatarId) >= limits.perAvatar
    ):
        return "queue-per-avatar"
    if (
        limits.perAddress is not None
        and waiter.address is not None
        and sum(1 for w in queue if w.address == waiter.address) >= limits.perAddress
    ):
        return "queue-per-address"
    return None


def seatRefusal(pool: str, limit: str) -> QuotaExceeded:
    """
    The refusal of a seat of C{pool} for the C{limit} reached (see
    L{IKeycardStore.addWithin}).
    """
    what = {
        "avatar": "too many keycards for this avatar",
        "queued": f"others are ahead in the queue of pool {pool!r}",
        "pool": f"no seat left in pool {pool!r}",
        "seats-per-avatar": f"too many seats of pool {pool!r} for this avatar",
    }[limit]
    return QuotaExceeded(what, limit)


@attrs.frozen
class IssuedKeycard:
    """
    What a store knows about one issued keycard.

    @ivar keycardId: the id the bouncer issued.
    @ivar avatarId: the avatar the checker authenticated.
    @ivar requesterName: the requester the keycard came through.
    @ivar bouncerName: the bouncer that issued it.
    @ivar keycardType: the keycard's type tag on the wire.
    @ivar address: the client's address as the requester saw it, if known.
    @ivar issued: POSIX time of issue.
    @ivar duration: seconds of validity granted at each issue or renewal.
    @ivar expires: POSIX time at which it expires.
    @ivar parentId: the keycard whose token this one was issued for, if
        any; revoking a parent revokes its children.
    @ivar seatPool: the seat pool this keycard holds a seat of, if any.
    @ivar held: whether a client holds it now; a released keycard is kept
        while its token is valid, but counts against no quota.
    @ivar familyId: the keycard id of the password login that started its
        chain of token logins (its own id for a password login); revoking
        any keycard revokes its whole family.
    @ivar holderId: the lease of the running bouncer that holds it (see
        L{twisted_keycard.store.ILeaseStore}), if any: when that lease runs
        out, the keycard is released.
    """

    keycardId: str
    avatarId: str
    requesterName: str | None
    bouncerName: str
    keycardType: str
    address: str | None
    issued: float
    duration: float
    expires: float
    parentId: str | None = None
    seatPool: str | None = None
    held: bool = True
    familyId: str | None = None
    holderId: str | None = None


@attrs.frozen
class Revocation:
    """
    A revoked keycard id, refused until C{expires}, when it would have
    expired anyway.

    @ivar keycardId: the revoked id.
    @ivar expires: POSIX time after which the revocation may be flushed.
    @ivar revokedAt: POSIX time of the revocation.
    @ivar reason: a short text for the audit log.
    """

    keycardId: str
    expires: float
    revokedAt: float
    reason: str = ""


#: The kinds of L{ThrottleEvent}.
FAILED = "failed"
STARTED = "started"
SUCCEEDED = "succeeded"


@attrs.frozen
class ThrottleEvent:
    """
    One change to the failed logins counted against a key, as bouncers
    share them.

    @ivar key: what it counts against: C{account:NAME} or
        C{address:GROUP}.
    @ivar at: POSIX time the login started, by its bouncer's clock.
    @ivar kind: L{FAILED}, a failed login; L{STARTED}, a login in
        progress, which counts as a failure until a L{SUCCEEDED} event of
        the same key and time withdraws it (a bouncer that dies never
        withdraws its logins in progress: they stay failures); or
        L{SUCCEEDED}.
    """

    key: str
    at: float
    kind: str = attrs.field(
        default=FAILED, validator=attrs.validators.in_((FAILED, STARTED, SUCCEEDED))
    )


@attrs.frozen
class ThrottleShare:
    """
    What L{IThrottleStore.shareThrottle} read.

    @ivar events: the other sources' events, oldest first.
    @ivar cursor: where the next read starts.
    @ivar more: whether the read stopped at its limit: more may wait.
    """

    events: list[ThrottleEvent]
    cursor: int
    more: bool = False


#: What a change notice names.
REVOKED = "revoked"
KEYRING = "keyring"
#: A seat of a pool was freed: the head of its queue may take it.
SEAT = "seat"
#: The store (re)connected: changes may have been missed meanwhile.
RECONNECTED = "reconnected"


class IStoreChanges(Interface):
    """
    A store that publishes its changes (revocations, keyring saves, seats
    freed) to every process using it.  Notices carry no data: a process reads what
    changed as it does when it polls (L{IRevocationStore.revokedSince},
    L{IKeyringStore.keyringVersion}), so a notice lost or repeated changes
    nothing but the delay.
    """

    def subscribe(callback: Callable[[str], object]) -> Callable[[], None]:
        """
        Call C{callback} with L{REVOKED} or L{KEYRING} when any process
        changes those, with L{SEAT} when one frees a seat of a pool (a
        keycard holding one released or removed, a lapsed lease's
        released), and with L{RECONNECTED} once notices flow again after
        the store was unreachable (notices were missed meanwhile).

        @return: a function that cancels the subscription.
        """


class IStoreHealth(Interface):
    """
    A store that says how it is, from its own view, at once and without a
    round trip: read whenever metrics are collected.
    """

    def storeUp() -> bool:
        """
        Whether the store works now, as it last saw: for Redis, a
        connection is up; for SQLite, the last transaction of its writer
        committed (or none has run yet); a store in memory always works.
        """

    def writesQueued() -> int:
        """
        The writes the store accepted and has not committed yet: SQLite's
        writes waiting for (or in) their group's transaction, the Redis
        writes queued while Redis is unreachable; none in memory.
        """


class BatchedLookups:
    """
    Answers "is this key in the set?" in batches: lookups that arrive while
    a query runs wait for the next one, of at most C{batch} keys, which
    answers them all.  A failed query fails every lookup it answers.
    """

    def __init__(
        self, query: Callable[[list[str]], Deferred[set[str]]], batch: int
    ) -> None:
        """
        @param query: given distinct keys, fires with those that are in the
            set.
        @param batch: keys one query asks for, at most.
        """
        self._query = query
        self._batch = batch
        self._waiting: dict[str, list[Deferred[bool]]] = {}
        self._querying = False

    def lookUp(self, key: str) -> Deferred[bool]:
        """
        Whether C{key} is in the set.
        """
        d: Deferred[bool] = Deferred()
        self._waiting.setdefault(key, []).append(d)
        if not self._querying:
            self._queryWaiting()
        return d

    def _queryWaiting(self) -> None:
        keys = list(self._waiting)[: self._batch]
        waiters = {k: self._waiting.pop(k) for k in keys}
        self._querying = True

        def answer(found: set[str] | Failure) -> None:
            self._querying = False
            for key, ds in waiters.items():
                for d in ds:
                    if isinstance(found, Failure):
                        d.errback(found)
                    else:
                        d.callback(key in found)
            if self._waiting:
                self._queryWaiting()

        self._query(keys).addBoth(answer)
