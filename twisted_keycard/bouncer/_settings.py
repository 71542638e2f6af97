"""
A bouncer's settings, as values: what it grants on success beyond the
keycard (tokens, quotas), its throttle, the limits on exchanges in
progress, and the rhythm of its upkeep.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from twisted_keycard.tokens import DEFAULT_MAX_FAMILY_LIFETIME, DEFAULT_SKEW

_count = [attrs.validators.instance_of(int), attrs.validators.ge(1)]
_positive = attrs.validators.optional(
    [attrs.validators.instance_of(int), attrs.validators.ge(1)]
)


#: The bounds of the default interval between two flushes of failed logins
#: (L{Throttle.flushEvery}).
MIN_FAILURE_FLUSH = 1.0
MAX_FAILURE_FLUSH = 300.0


def _finitePositive(instance: object, attribute: Any, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a positive number, not {value!r}")


def _names(names: Iterable[str]) -> frozenset[str]:
    return frozenset(names)


def _groups(groups: Iterable[Iterable[str]]) -> tuple[frozenset[str], ...]:
    """
    Groups of requester names, each a frozen set.

    @raise TypeError: for a bare string, which would be a group of its
        letters.
    """
    if isinstance(groups, str):
        raise TypeError("groups is a sequence of sets of names, not a string")
    made = []
    for group in groups:
        if isinstance(group, str):
            raise TypeError("each group is a set of names, not a string")
        made.append(frozenset(group))
    return tuple(made)


def _checkClaims(
    instance: object, attribute: object, claims: Mapping[str, str]
) -> None:
    """
    Refuse claims a token cannot carry, when the policy is made rather than
    at the first login.
    """
    for key, value in claims.items():
        if not key or any(c in key for c in "=\n\0") or any(c in value for c in "\n\0"):
            raise ValueError(
                f"bad claim {key!r}: keys are not empty and hold no '=', and"
                " neither keys nor values hold newlines or NUL"
            )


@attrs.frozen
class TokenPolicy:
    """
    Issue a signed token with every keycard, for logging in again without a
    password (see L{twisted_keycard.tokens}).

    @ivar bindAddress: bind each token to the client address it was issued
        to; it is then refused from any other address.
    @ivar claims: free claims written in every token issued after a
        password login (the license-server case: vendor, program, version),
        and required of every token presented here: one that lacks a claim
        or has another value is refused.  A token issued for a token keeps
        its family's claims.
    @ivar skew: seconds of clock difference tolerated at expiry.
    @ivar audiences: requester names through which every token is accepted
        besides the one it was issued through (applications that share
        logins); by default a token is accepted only through its own.
    @ivar groups: groups of requester names that take each other's tokens:
        a token issued through a name of a group is also accepted through
        the group's other names, and a token issued through any other
        requester is not (the bouncer service's own faces are one group:
        its PB face, its HTTP face and its ticket granting).
    @ivar maxFamilyLifetime: seconds after a password login past which no
        token of its family (the chain of token logins it started) is
        accepted, and which no token of it outlives; then the client logs
        in with its password again.
    @ivar whenStoreDown: what a running bouncer does with a token while it
        cannot read its store's revocations (none read for three follow
        intervals: the store is unreachable, or its reads fail):
        C{"refuse"} (the default) denies the login, to be tried again
        (L{KeycardDenied}: a token revoked meanwhile must not log in);
        C{"accept"} checks it against the revocations read until then (one
        revoked on another bouncer during the outage then logs in here).
    """

    bindAddress: bool = False
    claims: Mapping[str, str] = attrs.field(factory=dict, validator=_checkClaims)
    skew: float = DEFAULT_SKEW
    audiences: frozenset[str] = attrs.field(default=frozenset(), converter=_names)
    maxFamilyLifetime: float = attrs.field(
        default=DEFAULT_MAX_FAMILY_LIFETIME, validator=attrs.validators.gt(0)
    )
    groups: tuple[frozenset[str], ...] = attrs.field(default=(), converter=_groups)
    whenStoreDown: str = attrs.field(
        default="refuse", validator=attrs.validators.in_(("refuse", "accept"))
    )

    def audienceFor(
        self, requesterName: str | None, parent: Sequence[str] | None = None
    ) -> tuple[str, ...]:
        """
        The audience written in a token issued through C{requesterName}:
        that requester first, then the names of L{audiences} and of every
        group of L{groups} it belongs to.

        @param parent: for a token issued for another token, that token's
            audience: the new one names no more than it did, so a chain of
            token logins never reaches a face its first token did not.
        """
        names = [] if requesterName is None else [requesterName]
        extra = set(self.audiences)
        for group in self.groups:
            if requesterName in group:
                extra |= group
        audience = names + sorted(extra.difference(names))
        if parent is not None:
            audience = [name for name in audience if name in parent]
        return tuple(audience)


@attrs.frozen
class Quota:
    """
    Limits on keycards held at once, counted atomically in the store, so
    several bouncers on one store never grant more.

    @ivar maxPerAvatar: keycards one avatar may hold at once.
    @ivar seatPool: the pool every keycard of this bouncer takes a seat of.
    @ivar seats: the size of that pool.
    @ivar seatsPerAvatar: seats of that pool one avatar may hold at once,
        so that one user cannot take the whole pool; counted in the store
        across every bouncer on it, like the pool's size.
    """

    maxPerAvatar: int | None = attrs.field(default=None, validator=_positive)
    seatPool: str | None = None
    seats: int | None = attrs.field(default=None, validator=_positive)
    seatsPerAvatar: int | None = attrs.field(default=None, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if (self.seatPool is None) != (self.seats is None):
            raise ValueError("seatPool and seats go together")
        if self.seatsPerAvatar is not None and self.seatPool is None:
            raise ValueError("seatsPerAvatar needs a seatPool")


@attrs.frozen
class SeatQueuePolicy:
    """
    A queue for the bouncer's seat pool (see L{Quota}): a client that asks
    to wait for a seat and finds the pool full is queued instead of
    refused, first come, first served, across every bouncer on the store.

    @ivar size: clients waiting in the queue, at most.
    @ivar grace: seconds a client's place is kept after its last renewal:
        its requester renews it while the client waits connected; a client
        that comes back with its ticket within the grace (after a dropped
        connection, a bouncer restart) keeps its place.
    @ivar perAvatar: places one avatar holds in the queue, at most; C{None}
        for no share.
    @ivar perAddress: places one client address holds, at most; C{None}
        for no share.
    @ivar ticketLifetime: seconds after its first queuing past which a
        ticket is refused, however long its place was kept.
    """

    size: int = attrs.field(validator=_count)
    grace: float = attrs.field(default=30.0, validator=_finitePositive)
    perAvatar: int | None = attrs.field(default=None, validator=_positive)
    perAddress: int | None = attrs.field(default=None, validator=_positive)
    ticketLifetime: float = attrs.field(default=86400.0, validator=_finitePositive)


@attrs.frozen
class Throttle:
    """
    Limits on failed logins in a sliding window, per account and per client
    address group.  Past a limit, logins are refused before any expensive
    check, the same for known and unknown accounts.

    A login counts as a failure until it succeeds (a reservation, settled
    then): against its address group from its first message, and against
    its account from the message that tries a password (a challenge's
    answer, or the only message of a kind that has no challenge), taken in
    the bouncer's memory as that message arrives, so that logins started or
    answered together cannot all be checked.  An exchange left unanswered
    (timed out, abandoned by its connection, or pushed out) stays a failure
    of its address group only: no password was tried, so it never locks the
    account.  A first message is refused, too, while its account is at its
    limit.  A success unlocks nothing: failures stay counted until they
    leave the window, whoever succeeds meanwhile.

    Each bouncer decides from counts in its own memory.  While it runs as a
    service, it trades them with the other bouncers on its store every
    follow interval (L{Upkeep.followInterval}, a second): what fails on one
    counts on the others within about two intervals, and a bouncer that
    starts reads the failures of the window from the store.

    @ivar perAccount: failures per account per window, at most.
    @ivar perAddress: failures per client address group (an IPv4 address,
        or an IPv6 /64) per window, at most.
    @ivar window: the window, in seconds.
    @ivar maxKeys: accounts and address groups counted in memory at most;
        past it, of the least recently used few, the one that counts the
        fewest failures is forgotten (by this bouncer only).
    @ivar retention: seconds the store keeps a failed login, at least the
        window: the longest window of the bouncers sharing the store (a
        bouncer forgets what is older, for all of them); C{None}, the
        default: the window.  See L{kept}.
    @ivar flushInterval: seconds between two flushes of the failed logins
        past the retention; C{None}, the default: a twelfth of the window,
        from 1 to 300 seconds (5 minutes for an hour's window, 5 seconds for
        a minute's).  See L{flushEvery}.
    """

    perAccount: int = attrs.field(default=100, validator=_count)
    perAddress: int = attrs.field(default=30, validator=_count)
    window: float = attrs.field(default=3600.0, validator=_finitePositive)
    maxKeys: int = attrs.field(default=100_000, validator=_count)
    retention: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(_finitePositive)
    )
    flushInterval: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(_finitePositive)
    )

    def __attrs_post_init__(self) -> None:
        if self.retention is not None and self.retention < self.window:
            raise ValueError(
                "the retention of failed logins is at least the window:"
                " the window still counts them"
            )

    @property
    def kept(self) -> float:
        """
        Seconds the store keeps a failed login: L{retention}, else the
        window.
        """
        return self.window if self.retention is None else self.retention

    @property
    def flushEvery(self) -> float:
        """
        Seconds between two flushes of failed logins: L{flushInterval},
        else a twelfth of the window, from 1 to 300 seconds.  A failed login
        stays in the store at most L{kept} plus this long.
        """
        if self.flushInterval is not None:
            return self.flushInterval
        return min(MAX_FAILURE_FLUSH, max(MIN_FAILURE_FLUSH, self.window / 12))


@attrs.frozen
class ExchangeLimits:
    """
    Limits on exchanges in progress (from a keycard's first message until
    its check ends, or its challenge times out unanswered), so that clients
    who never answer cannot hold the bouncer's memory or its slots.

    When all C{maxPending} places are taken, a new exchange from a client
    address group with fewer exchanges in progress than the largest group
    takes the place of that group's oldest exchange: one address range
    cannot take every place, whatever its number of connections.

    @ivar timeout: seconds a client has to answer a challenge.
    @ivar maxPending: exchanges in progress at most, in all.
    @ivar maxPendingPerAddress: exchanges in progress at most from one
        client address group (an IPv4 address, or an IPv6 /64).
    @ivar maxPendingPerConnection: exchanges in progress at most on one
        client connection, for requesters that say which connection a
        keycard came on (L{IBouncer.authenticate}'s C{connection}).
    """

    timeout: float = 30.0
    maxPending: int = attrs.field(default=10_000, validator=_count)
    maxPendingPerAddress: int = attrs.field(default=100, validator=_count)
    maxPendingPerConnection: int = attrs.field(default=4, validator=_count)


@attrs.frozen
class Upkeep:
    """
    How often a running bouncer looks after its store.

    @ivar followInterval: seconds between two reads of the revocations and
        the keyring's version (other bouncers' changes to a shared store),
        and between two renewals of the bouncer's lease.
    @ivar flushInterval: seconds between two flushes of expired entries.
    @ivar leaseTime: seconds the bouncer's lease on the keycards it holds
        lasts after each renewal: when a bouncer is killed, its seats and
        per-avatar places are freed this long after its last renewal.  At
        least two follow intervals, and longer than the clocks of the
        bouncers sharing a store differ.
    """

    followInterval: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    flushInterval: float = 300.0
    leaseTime: float = 10.0

    def __attrs_post_init__(self) -> None:
        if not self.leaseTime >= 2 * self.followInterval:
            raise ValueError("leaseTime must be at least two follow intervals")
