"""
The bouncer's login steps: one keycard message through its exchange,
refused or throttled, begun (primed and challenged), continued (answered),
checked, and on success issued and held; the challengers of each keycard
class, the table of exchanges in progress, the throttle and the issuer.
"""

from __future__ import annotations

import bisect
import itertools
import secrets
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from datetime import datetime, timezone

import attrs
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from twisted_keycard._printable import LIMIT, printable
from twisted_keycard._shares import GroupSizes
from twisted_keycard.bouncer._composite import CompositePolicy
from twisted_keycard.bouncer._held import HeldKeycards, Lease
from twisted_keycard.bouncer._interfaces import (
    BUSY,
    TOO_MANY,
    IBouncerMetrics,
    Refusal,
    failureReason,
)
from twisted_keycard.bouncer._seats import SeatQueue, seatRequestOf
from twisted_keycard.bouncer._settings import (
    ExchangeLimits,
    Quota,
    Throttle,
    TokenPolicy,
)
from twisted_keycard.error import (
    KeycardDenied,
    KeycardRefused,
    ProtocolError,
    QuotaExceeded,
    Throttled,
)
from twisted_keycard.keycard import (
    IChallenger,
    IExchange,
    Keycard,
    KeycardState,
    addressGroup,
    normalizeAddress,
)
from twisted_keycard.store import (
    FAILED,
    STARTED,
    SUCCEEDED,
    IKeycardStore,
    IssuedKeycard,
    IThrottleStore,
    ThrottleEvent,
)
from twisted_keycard.tokens import KeyringHolder, TokenClaims, sign


class Challengers:
    """
    Checkers by the credentials they check, challengers by keycard type.

    @ivar keycardClasses: the keycard classes taken, in the checkers' order.
    """

    def __init__(self, checkers: Iterable[ICredentialsChecker]) -> None:
        """
        @raise ValueError: if two challengers claim one keycard class.
        """
        self.checkers = list(checkers)
        self._byType: dict[str, IChallenger] = {}
        classes: list[type[Keycard]] = []
        for checker in self.checkers:
            if not IChallenger.providedBy(checker):
                continue
            for cls in checker.keycardClasses:
                if cls.keycardType in self._byType:
                    raise ValueError(f"two challengers for {cls.keycardType}")
                self._byType[cls.keycardType] = checker
                classes.append(cls)
        self.keycardClasses = tuple(classes)

    def takes(self, keycardType: str) -> bool:
        return keycardType in self._byType

    def challenger(self, keycardType: str) -> IChallenger:
        """
        @raise KeyError: for a keycard type not taken.
        """
        return self._byType[keycardType]

    def checkerFor(self, exchange: IExchange) -> ICredentialsChecker | None:
        """
        The first checker for credentials such as C{exchange}, if any.
        """
        for checker in self.checkers:
            for iface in checker.credentialInterfaces:
                if iface.providedBy(exchange):
                    return checker
        return None


def keys(account: str | None, address: str | None) -> list[str]:
    """
    The keys failures are counted under: the account, and the client's
    address group (an IPv4 address, or an IPv6 /64).
    """
    found = []
    if account is not None:
        found.append(f"account:{account}")
    group = addressGroup(address)
    if group is not None:
        found.append(f"address:{group}")
    return found


@attrs.define(eq=False)
class Reservation:
    """
    One login in progress, counted as a failure until it is settled.

    @ivar keys: the keys it counts against.
    @ivar at: when it started.
    @ivar settled: whether it was settled (it is settled once).
    @ivar shared: whether it was sent to the store as started.
    """

    keys: tuple[str, ...]
    at: float
    settled: bool = False
    shared: bool = False


@attrs.define
class _Counts:
    """
    What counts against one key: failed logins and logins in progress, each
    as the time it started, oldest first.

    @ivar failures: failed logins, here and on other bouncers; the newest
        ones only, as many as the key's limit (a count at the limit needs
        no more).
    @ivar pending: logins in progress here, and on other bouncers until
        they say it succeeded.
    """

    failures: list[float] = attrs.Factory(list)
    pending: list[float] = attrs.Factory(list)

    def count(self, since: float) -> int:
        """
        Forget what started at or before C{since}, and count the rest.
        """
        for times in (self.failures, self.pending):
            if times and times[0] <= since:
                del times[: bisect.bisect_right(times, since)]
        return len(self.failures) + len(self.pending)

    def freeAt(self, limit: int) -> float:
        """
        When, at the latest, fewer than C{limit} of what is counted now will
        have started after the window's start: the start time of the one
        that must leave the window for a login to be counted again.
        """
        times = sorted(self.failures + self.pending)
        return times[max(0, len(times) - limit)]

    def fail(self, at: float, kept: int) -> None:
        bisect.insort(self.failures, at)
        if len(self.failures) > kept:
            del self.failures[0]

    def end(self, at: float) -> None:
        """
        A login in progress that started at C{at} ended: stop counting it.
        """
        pending = self.pending
        i = bisect.bisect_left(pending, at)
        if i < len(pending) and pending[i] == at:
            del pending[i]


#: Entries of the store's throttle log read in one round trip, at most.
SHARE_BATCH = 10_000

#: Events a bouncer keeps to send at most, while the store is unreachable.
UNSHARED_KEPT = 100_000

#: Keys looked at to choose one to forget when the counts are full.
EVICTION_SAMPLE = 16


@attrs.define
class Throttler:
    """
    Applies a L{Throttle}: decides from counts kept in memory, per account
    and per address group, in sliding windows, and shares them with the
    bouncers on its store through the store's log (L{IThrottleStore}).

    While started (the bouncer runs as a service), L{share} sends what
    changed here since the last batch and adds what the others wrote, every
    follow interval: a login that fails here counts on the others once this
    bouncer, then each of them, has shared (within two intervals).  A login
    in progress at a batch is sent as started (a failure on the others
    until it succeeds), so that an exchange held open counts everywhere
    too.

    At most C{limits.maxKeys} keys are counted: past that, the key that
    counts the fewest of a few least recently used is forgotten here (the
    store still has its events).

    @ivar source: this bouncer's name in the store's log, unique to it.
    """

    store: IThrottleStore
    clock: IReactorTime
    limits: Throttle
    source: str = attrs.field(factory=lambda: secrets.token_urlsafe(12))
    _counts: OrderedDict[str, _Counts] = attrs.field(factory=OrderedDict, init=False)
    #: Events to send at the next share, oldest first.
    _unshared: list[ThrottleEvent] = attrs.field(factory=list, init=False)
    #: Logins in progress not sent yet: sent as started if still in progress
    #: at the next share; if they end first, only a failure is sent.
    _fresh: dict[Reservation, None] = attrs.field(factory=dict, init=False)
    _cursor: int = attrs.field(default=0, init=False)
    _started: bool = attrs.field(default=False, init=False)
    _sharing: bool = attrs.field(default=False, init=False)
    _dropping: bool = attrs.field(default=False, init=False)
    log = Logger()

    def __len__(self) -> int:
        """
        The number of keys (accounts, address groups) counted in memory.
        """
        return len(self._counts)

    def _limit(self, key: str) -> int:
        if key.startswith("account:"):
            return self.limits.perAccount
        return self.limits.perAddress

    def count(self, key: str) -> int:
        """
        The failed logins and logins in progress counted against C{key}
        (C{account:NAME}, C{address:GROUP}) in the window now.
        """
        counts = self._counts.get(key)
        if counts is None:
            return 0
        return counts.count(self.clock.seconds() - self.limits.window)

    async def reserve(
        self, account: str | None, address: str | None
    ) -> Reservation | None:
        """
        Count a login that starts now against the account and the address.

        @return: the reservation to settle when the login ends, or C{None}
            if there is nothing to count it against.
        @raise Throttled: if the account or the address is at its limit in
            the current window, counting the logins in progress; its
            C{retryAfter} says when that ends at the latest.
        """
        return self._reserve(account, address, keys(account, address))

    async def begin(
        self, account: str | None, address: str | None
    ) -> Reservation | None:
        """
        Count an exchange whose first message arrives now against its
        address group only: no password is tried yet, so that exchanges
        never answered cannot lock the account.  The account is reserved
        (L{reserve}) when the message that tries a password arrives.

        @return: the reservation to settle when the exchange ends, or
            C{None} if there is no address to count it against.
        @raise Throttled: as L{reserve}.
        """
        return self._reserve(account, address, keys(None, address))

    def _reserve(
        self, account: str | None, address: str | None, held: list[str]
    ) -> Reservation | None:
        """
        Refuse if the account or the address is at its limit, else count a
        login in progress against C{held}, all at once (no wait): logins
        arriving together are checked one after the other.
        """
        now = self.clock.seconds()
        since = now - self.limits.window
        freeAt = None
        for key in keys(account, address):
            counts = self._counts.get(key)
            limit = self._limit(key)
            if counts is not None and counts.count(since) >= limit:
                at = counts.freeAt(limit) + self.limits.window
                freeAt = at if freeAt is None else max(freeAt, at)
        if freeAt is not None:
            self.log.info(
                "throttled a login for {account} from {address}",
                account=printable(account),
                address=printable(address),
            )
            raise Throttled(TOO_MANY, retryAfter=freeAt - now)
        if not held:
            return None
        reservation = Reservation(tuple(held), now)
        for key in held:
            bisect.insort(self._touch(key).pending, now)
        if self._started:
            self._fresh[reservation] = None
        return reservation

    async def settle(self, reservation: Reservation, failed: bool) -> None:
        """
        End a login: a failure stays counted, a success is forgotten.  A
        reservation is settled once; later calls do nothing.
        """
        self._settle(reservation, failed)

    def abandoned(self, reservation: Reservation) -> None:
        """
        Settle as a failure the reservation of an exchange left unanswered,
        without waiting: from code that cannot wait.
        """
        self._settle(reservation, True)

    async def failed(self, account: str | None, address: str | None) -> None:
        """
        Count one failure against the account and the address, for a
        refusal that had no reservation.
        """
        now = self.clock.seconds()
        for key in keys(account, address):
            self._touch(key).fail(now, self._limit(key))
            self._send(ThrottleEvent(key, now, FAILED))

    def _settle(self, reservation: Reservation, failed: bool) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        self._fresh.pop(reservation, None)
        for key in reservation.keys:
            counts = self._counts.get(key)
            if counts is not None:
                counts.end(reservation.at)
            if failed:
                self._touch(key).fail(reservation.at, self._limit(key))
            # Sent as started and failed, it counts as a failure on the
            # others already, until it leaves the window.
            if failed and not reservation.shared:
                self._send(ThrottleEvent(key, reservation.at, FAILED))
            elif reservation.shared and not failed:
                self._send(ThrottleEvent(key, reservation.at, SUCCEEDED))

    def _touch(self, key: str) -> _Counts:
        """
        The counts of C{key}, made if need be, now the most recently used.
        """
        counts = self._counts.get(key)
        if counts is None:
            if len(self._counts) >= self.limits.maxKeys:
                self._evict()
            counts = self._counts[key] = _Counts()
        else:
            self._counts.move_to_end(key)
        return counts

    def _evict(self) -> None:
        """
        Forget the key that counts the fewest (the least recently used of
        those) among the least recently used few: one key of a flood of
        new names goes before an account near its limit.
        """
        since = self.clock.seconds() - self.limits.window
        sample = itertools.islice(self._counts.items(), EVICTION_SAMPLE)
        key, _ = min(sample, key=lambda item: item[1].count(since))
        del self._counts[key]

    def _sweep(self) -> None:
        """
        Forget the least recently used keys with nothing left in the
        window, up to the first one that still counts something.
        """
        since = self.clock.seconds() - self.limits.window
        counts = self._counts
        while counts:
            key, first = next(iter(counts.items()))
            if first.count(since):
                return
            del counts[key]

    def _send(self, event: ThrottleEvent) -> None:
        """
        Keep C{event} for the next share, while started; the oldest are
        dropped past L{UNSHARED_KEPT} (the store is unreachable).
        """
        if not self._started:
            return
        unshared = self._unshared
        unshared.append(event)
        if len(unshared) > UNSHARED_KEPT:
            del unshared[: len(unshared) - UNSHARED_KEPT]
            if not self._dropping:
                self._dropping = True
                self.log.warn(
                    "the store has not taken the throttle counts for a while:"
                    " keeping the newest {kept} failed logins to send",
                    kept=UNSHARED_KEPT,
                    event="throttle.unshared",
                )

    def _takeUnshared(self) -> list[ThrottleEvent]:
        """
        The events to send now: those kept, and the logins in progress not
        sent yet, as started; those that left the window are dropped.
        """
        events, self._unshared = self._unshared, []
        for reservation in self._fresh:
            reservation.shared = True
            events.extend(
                ThrottleEvent(key, reservation.at, STARTED) for key in reservation.keys
            )
        self._fresh.clear()
        since = self.clock.seconds() - self.limits.window
        return [event for event in events if event.at > since]

    def _add(self, events: Iterable[ThrottleEvent]) -> None:
        """
        Count what other bouncers sent.
        """
        since = self.clock.seconds() - self.limits.window
        for event in events:
            if event.kind == SUCCEEDED:
                counts = self._counts.get(event.key)
                if counts is not None:
                    counts.end(event.at)
            elif event.at > since:
                counts = self._touch(event.key)
                if event.kind == FAILED:
                    counts.fail(event.at, self._limit(event.key))
                else:
                    bisect.insort(counts.pending, event.at)

    async def start(self) -> None:
        """
        Start sharing: read the events the store keeps that this throttler
        has not read (at the first start, the failures of the window, of
        other bouncers and of this one's earlier runs), then keep what
        changes here for L{share}.
        """
        self._started = True
        await self.share()

    async def share(self) -> int:
        """
        One batch: send what changed here since the last one, and add what
        the other bouncers sent since (reading until the log is read).  If
        the store fails, what was to be sent is kept for the next batch.
        A call while one runs does nothing.

        @return: the number of other bouncers' events read.
        """
        if self._sharing:
            return 0
        self._sharing = True
        try:
            events = self._takeUnshared()
            read = 0
            while True:
                try:
                    shared = await self.store.shareThrottle(
                        self.source, events, self._cursor, SHARE_BATCH
                    )
                except Exception:
                    self._unshared[:0] = events
                    raise
                events = []
                self._dropping = False
                self._cursor = shared.cursor
                self._add(shared.events)
                read += len(shared.events)
                if not shared.more:
                    break
            self._sweep()
            return read
        finally:
            self._sharing = False

    def stop(self) -> Deferred[None]:
        """
        Stop sharing: send what changed since the last batch (logins in
        progress as started), and keep nothing more to send.

        @return: a L{Deferred} firing once the store has it (a failure is
            logged).
        """
        events = self._takeUnshared() if self._started else []
        self._started = False
        if not events:
            return succeed(None)
        d = self.store.shareThrottle(self.source, events, self._cursor, 0)
        d.addErrback(
            lambda f: self.log.failure("sending the last throttle counts failed", f)
        )
        return d.addCallback(lambda _: None)


@attrs.define(eq=False)
class PendingExchange:
    """
    One exchange in progress, with what its answer must match: the keycard's
    class, the client's address, the requester and the connection.

    @ivar exchange: set once the challenge is sent and the bouncer waits for
        the answer; C{None} while the first message is being handled.
    @ivar reservation: the throttle's reservation, held by the table while
        the bouncer waits for the answer.
    """

    keycardType: str
    address: str | None
    requesterName: str | None
    connection: Hashable | None
    deadline: float
    group: str | None = None
    exchange: IExchange | None = None
    account: str | None = None
    reservation: Reservation | None = None


@attrs.define
class PendingExchanges:
    """
    Exchanges in progress, by keycard id.

    Entries are kept in the order they were made, and all live equally long,
    so the oldest are at the front: L{purge} drops the expired ones in time
    proportional to their number, with no timer.

    @ivar onDrop: called with each entry dropped before it was taken: timed
        out, abandoned by its connection, or giving its place to another
        address group.
    """

    clock: IReactorTime
    limits: ExchangeLimits
    onDrop: Callable[[PendingExchange], object] = lambda entry: None
    _entries: OrderedDict[str, PendingExchange] = attrs.field(factory=OrderedDict)
    _byGroup: dict[str | None, OrderedDict[str, None]] = attrs.field(factory=dict)
    _byConnection: dict[Hashable, dict[str, None]] = attrs.field(factory=dict)
    _sizes: GroupSizes[str | None] = attrs.field(factory=GroupSizes)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, keycardId: object) -> bool:
        return keycardId in self._entries

    def onConnection(self, connection: Hashable) -> int:
        """
        The number of exchanges in progress on C{connection}.
        """
        return len(self._byConnection.get(connection, ()))

    def reserve(
        self,
        keycardId: str,
        keycardType: str,
        address: str | None,
        requesterName: str | None,
        connection: Hashable | None = None,
    ) -> PendingExchange:
        """
        Take a place for a new exchange, when the table is full the place of
        the oldest exchange of the largest address group, if that group is
        larger than this client's.

        @raise KeycardDenied: if there are too many exchanges in progress on
            this connection, from this address group, or in all.
        """
        self.purge()
        limits = self.limits
        group = addressGroup(address)
        if (
            connection is not None
            and self.onConnection(connection) >= limits.maxPendingPerConnection
        ) or self._sizes[group] >= limits.maxPendingPerAddress:
            raise KeycardDenied(BUSY)
        if len(self._entries) >= limits.maxPending:
            largest, size = self._sizes.largest()
            if self._sizes[group] >= size:
                raise KeycardDenied(BUSY)
            oldest = next(iter(self._byGroup[largest]))
            self._drop(oldest)
        entry = PendingExchange(
            keycardType,
            address,
            requesterName,
            connection,
            self.clock.seconds() + limits.timeout,
            group,
        )
        self._entries[keycardId] = entry
        self._byGroup.setdefault(group, OrderedDict())[keycardId] = None
        self._sizes.add(group, 1)
        if connection is not None:
            self._byConnection.setdefault(connection, {})[keycardId] = None
        return entry

    def take(self, keycardId: str) -> PendingExchange | None:
        """
        Remove and return the exchange for this id, if it is there and has
        not expired.  An exchange can be taken only once.
        """
        self.purge()
        entry = self._entries.pop(keycardId, None)
        if entry is not None:
            self._release(keycardId, entry)
        return entry

    def abandon(self, connection: Hashable) -> int:
        """
        Drop the exchanges in progress on a connection that is gone.

        @return: the number dropped.
        """
        ids = list(self._byConnection.get(connection, ()))
        for keycardId in ids:
            self._drop(keycardId)
        return len(ids)

    def purge(self) -> None:
        """
        Drop the exchanges whose time is up.
        """
        now = self.clock.seconds()
        entries = self._entries
        while entries:
            keycardId, entry = next(iter(entries.items()))
            if entry.deadline > now:
                break
            self._drop(keycardId)

    def _drop(self, keycardId: str) -> None:
        entry = self._entries.pop(keycardId)
        self._release(keycardId, entry)
        self.onDrop(entry)

    def _release(self, keycardId: str, entry: PendingExchange) -> None:
        group = self._byGroup[entry.group]
        del group[keycardId]
        if not group:
            del self._byGroup[entry.group]
        self._sizes.add(entry.group, -1)
        if entry.connection is not None:
            ids = self._byConnection[entry.connection]
            del ids[keycardId]
            if not ids:
                del self._byConnection[entry.connection]


#: Requesters whose token audience an L{Issuer} keeps worked out.
MAX_AUDIENCES = 1024


@attrs.define
class Issuer:
    """
    Makes and records the issued keycard for a successful exchange.

    @ivar keys: the keyring to sign tokens with, when C{tokens} is set.
    @ivar lease: the running bouncer's lease, recorded in the keycards it
        issues.
    @ivar seatRefusals: the keycards its store refused a seat, by the
        limit reached (C{"pool"}, C{"seats-per-avatar"}, C{"avatar"}),
        since it started: a handful of keys, each a count.
    """

    store: IKeycardStore
    clock: IReactorTime
    bouncerName: str
    duration: float
    tokens: TokenPolicy | None = None
    keys: KeyringHolder | None = None
    quota: Quota | None = None
    policy: CompositePolicy | None = None
    lease: Lease | None = None
    seatRefusals: dict[str, int] = attrs.field(factory=dict)
    #: The pool's queue, when the bouncer keeps one.
    seatQueue: SeatQueue | None = None
    _audiences: dict[str | None, tuple[str, ...]] = attrs.field(
        factory=dict, init=False
    )

    async def issue(
        self, keycard: Keycard, avatarId: str, parent: TokenClaims | None = None
    ) -> tuple[IssuedKeycard, str | None]:
        """
        Record C{keycard} (its id, type, address and requester set) as
        issued to C{avatarId}: in the family of C{parent}, the token it was
        issued for, or starting its own family.

        @return: the record and the token, if tokens are issued and the
            keycard's requester wants it.
        @raise Refusal: if the policy refuses it.
        @raise twisted_keycard.error.QuotaExceeded: if no seat is left.
        @raise twisted_keycard.error.SeatQueued: if no seat is left and its
            requester asked to wait for one (L{waitForSeat}): it is queued.
        """
        assert keycard.id is not None
        now = self.clock.seconds()
        quota = self.quota
        record = IssuedKeycard(
            keycardId=keycard.id,
            avatarId=avatarId,
            requesterName=keycard.requesterName,
            bouncerName=self.bouncerName,
            keycardType=keycard.keycardType,
            address=keycard.address,
            issued=now,
            duration=self.duration,
            expires=now + self.duration,
            parentId=None if parent is None else parent.keycardId,
            seatPool=quota.seatPool if quota is not None else None,
            familyId=keycard.id if parent is None else parent.family,
            holderId=None if self.lease is None else self.lease.heldBy,
        )
        if self.policy is not None and not self.policy.allows(record):
            raise Refusal(f"refused by the policy {self.policy.text!r}", "policy")
        token = await self._token(record, parent) if keycard.wantsToken else None
        if quota is None:
            await self.store.add(record)
        else:
            request = seatRequestOf(keycard)
            queue = self.seatQueue if request is not None else None
            ticket = None
            if queue is not None and request is not None:
                ticket = request.ticket
                if ticket is not None and not queue.owns(avatarId, ticket):
                    # Another avatar's ticket, or another pool's.
                    ticket = None
            try:
                await self.store.addWithin(
                    record,
                    quota.maxPerAvatar,
                    quota.seats,
                    quota.seatsPerAvatar,
                    None if ticket is None else ticket.ticketId,
                )
            except QuotaExceeded as e:
                limit = e.limit or "pool"
                self.seatRefusals[limit] = self.seatRefusals.get(limit, 0) + 1
                if queue is not None and limit in ("pool", "queued"):
                    raise await queue.join(avatarId, record.address, ticket) from None
                raise
        return record, token

    async def _token(
        self, record: IssuedKeycard, parent: TokenClaims | None
    ) -> str | None:
        tokens = self.tokens
        if tokens is None or self.keys is None:
            return None
        keyring = await self.keys.current()
        familyStart = record.issued if parent is None else parent.familyStart
        claims = TokenClaims(
            keycardId=record.keycardId,
            avatarId=record.avatarId,
            issued=record.issued,
            # A chain of token logins ends with its family's lifetime.
            expires=min(record.expires, familyStart + tokens.maxFamilyLifetime),
            bouncerName=self.bouncerName,
            requesterName=record.requesterName,
            address=(
                normalizeAddress(record.address)
                if tokens.bindAddress and record.address is not None
                else None
            ),
            parentId=record.parentId,
            # A child keeps its family's claims, which include this
            # bouncer's: the token checker refused the parent otherwise.
            claims=tokens.claims if parent is None else parent.claims,
            familyId=record.familyId,
            familyIssued=familyStart,
            audience=self.audience(record, parent),
        )
        return sign(claims, keyring.signing)

    def audience(
        self, record: IssuedKeycard, parent: TokenClaims | None
    ) -> tuple[str, ...]:
        """
        The names through which the token of C{record} is taken, whether or
        not one is signed (see L{TokenPolicy.audienceFor}): the requester it
        came through first, then the configured ones; for a token issued
        for C{parent}, no name that token did not have.  Without tokens,
        its requester alone.
        """
        tokens = self.tokens
        if tokens is None:
            return () if record.requesterName is None else (record.requesterName,)
        if parent is not None:
            return tokens.audienceFor(record.requesterName, parent.audiences)
        # The policy is frozen: each requester's audience is worked out once.
        audiences = self._audiences
        found = audiences.get(record.requesterName)
        if found is None:
            if len(audiences) >= MAX_AUDIENCES:
                audiences.clear()
            found = audiences[record.requesterName] = tokens.audienceFor(
                record.requesterName
            )
        return found


@attrs.define
class _Attempt:
    """
    What one message of an exchange is about, for throttling.

    @ivar reservation: the throttle's reservation against the address
        group while this message owns it, to settle when the message is
        handled.
    """

    account: str | None = None
    reservation: Reservation | None = None
    #: The account's reservation, taken when the message that tries a
    #: password arrives, to settle with C{reservation}.
    accountReservation: Reservation | None = None


@attrs.define
class Authentication:
    """
    The bouncer's handling of keycard messages, from the parts that keep
    its state.

    @ivar bouncerName: set in every keycard checked.
    @ivar newId: makes keycard ids.
    @ivar metrics: told each login's outcome.
    """

    bouncerName: str
    challengers: Challengers
    clock: IReactorTime
    limits: ExchangeLimits
    throttler: Throttler | None
    issuer: Issuer
    held: HeldKeycards
    newId: Callable[[], str]
    metrics: IBouncerMetrics | None = None
    #: The exchanges in progress; one dropped unanswered counts as a failure
    #: of its address group.
    pending: PendingExchanges = attrs.field(init=False)
    log = Logger()

    def __attrs_post_init__(self) -> None:
        self.pending = PendingExchanges(self.clock, self.limits, onDrop=self.dropped)

    async def authenticate(
        self, keycard: Keycard, connection: Hashable | None = None
    ) -> Keycard:
        """
        Take one message of an exchange (see L{IBouncer.authenticate}),
        and tell the metrics how long its answer took.
        """
        start = self.clock.seconds()
        try:
            return await self._answer(keycard, connection)
        finally:
            if self.metrics is not None:
                self.metrics.messageAnswered(
                    self._kind(keycard), self.clock.seconds() - start
                )

    async def _answer(self, keycard: Keycard, connection: Hashable | None) -> Keycard:
        attempt = _Attempt()
        try:
            if not isinstance(keycard, Keycard):
                raise Refusal("not a keycard", "kind")
            if not self.challengers.takes(keycard.keycardType):
                raise Refusal("keycard class not taken here", "kind")
            if keycard.state is not KeycardState.REQUESTING:
                raise Refusal(f"keycard sent in state {keycard.state.name}", "state")
            # Whatever the client claims in the fields the bouncer sets is
            # dropped before anything reads it.
            keycard.avatarId = keycard.token = None
            keycard.duration = keycard.expires = None
            keycard.bouncerName = self.bouncerName
            if keycard.id is None:
                result = await self._begin(keycard, attempt, connection)
            else:
                result = await self._continue(keycard, attempt, connection)
        except KeycardDenied as e:
            # Before UnauthorizedLogin, which a denial also is.
            if self.metrics is not None:
                self.metrics.loginFailed(self._kind(keycard), failureReason(e))
            self._audit("login.denied", keycard, attempt, str(e))
            await self._settle(attempt, None, False)
            raise
        except (Refusal, ProtocolError, UnauthorizedLogin) as e:
            if self.metrics is not None:
                self.metrics.loginFailed(self._kind(keycard), failureReason(e))
            self._audit("login.refused", keycard, attempt, str(e) or type(e).__name__)
            keycard.state = KeycardState.REFUSED
            await self._settle(attempt, getattr(keycard, "address", None), True)
            raise KeycardRefused() from None
        except Exception:
            # A bug or a failing store: logged here, never sent to the peer.
            if self.metrics is not None:
                self.metrics.loginFailed(self._kind(keycard), "error")
            self.log.failure("checking a keycard failed")
            await self._settle(attempt, None, False)
            raise KeycardDenied("the bouncer failed; try again later") from None
        await self._settle(attempt, None, False)
        return result

    async def _settle(
        self, attempt: _Attempt, address: str | None, failed: bool
    ) -> None:
        """
        Count the end of a message's work with the throttle: settle the
        reservation it owns, or count a refusal that had none.  A failing
        store is logged, never sent to the peer.
        """
        throttler = self.throttler
        if throttler is None:
            return
        try:
            held = [attempt.reservation, attempt.accountReservation]
            for reservation in held:
                if reservation is not None:
                    await throttler.settle(reservation, failed)
            if failed and held == [None, None]:
                await throttler.failed(attempt.account, address)
        except Exception:
            self.log.failure("counting a login with the throttle failed")

    def dropped(self, entry: PendingExchange) -> None:
        """
        An exchange was dropped unanswered (timed out, abandoned by its
        connection, or pushed out by another address group): a failure of
        its address group, never of the account (no password was tried).
        """
        if self.throttler is not None and entry.reservation is not None:
            self.throttler.abandoned(entry.reservation)

    def abandon(self, connection: Hashable) -> None:
        """
        The connection is gone: drop its exchanges in progress.
        """
        self.pending.abandon(connection)

    async def _begin(
        self, keycard: Keycard, attempt: _Attempt, connection: Hashable | None
    ) -> Keycard:
        attempt.account = keycard.account()
        keycardId = self.newId()
        # The place is taken before anything waits, so that exchanges of a
        # connection count against its limit from their first message.
        entry = self.pending.reserve(
            keycardId,
            keycard.keycardType,
            keycard.address,
            keycard.requesterName,
            connection,
        )
        waiting = False
        try:
            if self.throttler is not None:
                attempt.reservation = await self.throttler.begin(
                    attempt.account, keycard.address
                )
                self._stillPending(keycardId)
            challenger = self.challengers.challenger(keycard.keycardType)
            exchange: IExchange = await maybeDeferred(challenger.prime, keycard)
            self._stillPending(keycardId)
            keycard.id = keycardId
            if not exchange.challenge(keycard):
                # One message, which tries the password: the account is
                # reserved, then it is checked.
                await self._reserveAccount(attempt)
                return await self._check(keycard, exchange, attempt)
            entry.exchange = exchange
            entry.account = attempt.account
            entry.reservation, attempt.reservation = attempt.reservation, None
            waiting = True
            return keycard
        finally:
            if not waiting:
                self.pending.take(keycardId)

    def _stillPending(self, keycardId: str) -> None:
        """
        @raise Refusal: if the exchange was dropped while the bouncer waited
            (its connection went, or another address group took its place).
        """
        if keycardId not in self.pending:
            raise Refusal("exchange dropped before its challenge was sent", "busy")

    async def _continue(
        self, keycard: Keycard, attempt: _Attempt, connection: Hashable | None
    ) -> Keycard:
        assert keycard.id is not None
        entry = self.pending.take(keycard.id)
        if entry is None or entry.exchange is None:
            raise Refusal("unknown, used or expired keycard id", "unknown-id")
        attempt.account = entry.account
        attempt.reservation = entry.reservation
        if (entry.keycardType, entry.address, entry.requesterName) != (
            keycard.keycardType,
            keycard.address,
            keycard.requesterName,
        ) or (entry.connection is not None and entry.connection != connection):
            raise Refusal("keycard id presented by another client", "other-client")
        # The answer tries the password: the account is reserved now, before
        # anything waits, so answers arriving together are counted in turn.
        await self._reserveAccount(attempt)
        entry.exchange.answer(keycard)
        return await self._check(keycard, entry.exchange, attempt)

    async def _reserveAccount(self, attempt: _Attempt) -> None:
        """
        Count the message that tries a password against its account.

        @raise KeycardDenied: if the account is at its limit.
        """
        if self.throttler is not None and attempt.account is not None:
            attempt.accountReservation = await self.throttler.reserve(
                attempt.account, None
            )

    async def _check(
        self, keycard: Keycard, exchange: IExchange, attempt: _Attempt
    ) -> Keycard:
        checker = self.challengers.checkerFor(exchange)
        if checker is None:
            raise Refusal("no checker for these credentials", "checker")
        checked: object = await maybeDeferred(checker.requestAvatarId, exchange)
        avatarId = checked.decode("utf-8") if isinstance(checked, bytes) else checked
        if not isinstance(avatarId, str):
            raise Refusal("checker gave no avatar id", "checker")
        exchange.conclude(keycard)
        parent = getattr(exchange, "parentToken", None)
        if not isinstance(parent, TokenClaims):
            parent = None
        record, token = await self.issuer.issue(keycard, avatarId, parent)
        self.held.hold(record, self.issuer.audience(record, parent))
        keycard.state = KeycardState.AUTHENTICATED
        keycard.avatarId = avatarId
        keycard.duration = record.duration
        keycard.expires = record.expires
        keycard.token = token
        if self.metrics is not None:
            self.metrics.loginSucceeded(self._kind(keycard))
        # One line per login, written once here with every peer-supplied
        # value escaped; the same values travel as the event's fields.
        expires = datetime.fromtimestamp(record.expires, timezone.utc).isoformat(
            timespec="seconds"
        )
        avatar = _shown(avatarId)
        account = _shown(_account(keycard, attempt))
        requester = _shown(record.requesterName)
        address = _shown(record.address)
        self.log.info(
            "{line}",
            line=f"keycard {record.keycardId} issued to {avatar} via {requester}"
            f" from {address} ({record.keycardType} for {account}),"
            f" expires {expires}",
            event="login.issued",
            keycardId=record.keycardId,
            avatarId=avatar,
            account=account,
            keycardType=record.keycardType,
            requesterName=requester,
            address=address,
            expires=expires,
        )
        return keycard

    def _kind(self, keycard: object) -> str:
        """
        The keycard's type, for the metrics, if this bouncer takes it; else
        C{"other"}, so that a peer cannot make up labels.
        """
        if isinstance(keycard, Keycard) and self.challengers.takes(keycard.keycardType):
            return keycard.kind
        return "other"

    def _audit(
        self, event: str, keycard: object, attempt: _Attempt, reason: str
    ) -> None:
        """
        Log a refusal or a denial: its stable C{event} name, the reason,
        and the account tried, kind, requester and address, all escaped.
        """
        verb = "refused" if event == "login.refused" else "denied"
        self.log.info(
            "keycard " + verb + ": {reason} ({keycardType} for {account}"
            " via {requesterName} from {address})",
            event=event,
            reason=printable(reason),
            account=printable(_account(keycard, attempt)),
            keycardType=printable(
                getattr(keycard, "keycardType", type(keycard).__name__)
            ),
            requesterName=printable(getattr(keycard, "requesterName", None)),
            address=printable(getattr(keycard, "address", None)),
        )


def _shown(text: str | None) -> str:
    """
    C{text} as L{printable} shows it, without a call there in the common
    case (short, printable, no backslash).
    """
    if text is None:
        return "-"
    if len(text) <= LIMIT and text.isprintable() and "\\" not in text:
        return text
    return printable(text)


def _account(keycard: object, attempt: _Attempt) -> str | None:
    """
    The account a message tried, for its audit line: the exchange's, or
    else the one the keycard claims (a token's avatar: see
    L{Keycard.claimedName}).
    """
    if attempt.account is not None or not isinstance(keycard, Keycard):
        return attempt.account
    try:
        return keycard.claimedName()
    except Exception:
        return None
