"""
The in-process bouncer: challenges keycards, hands them to checkers, issues
keycard ids and expires them.  It composes the parts that do each job:
L{Challengers}, L{PendingExchanges}, L{Throttler}, L{Issuer},
L{HeldKeycards}, L{Revoker}, and, while it runs as a service, its
L{ServiceUpkeep} (a L{Follower} of revocations, the keyring and its
L{Lease}, and a L{Flusher}).
"""

from __future__ import annotations

from binascii import b2a_base64
from collections import Counter
from collections.abc import (
    Callable,
    Collection,
    Hashable,
    Iterable,
    Mapping,
    Sequence,
)
from os import urandom

from twisted.application.service import Service
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_keycard._files import deferNow
from twisted_keycard.bouncer._composite import CompositePolicy
from twisted_keycard.bouncer._held import HeldKeycards, newHolderId
from twisted_keycard.bouncer._interfaces import (
    BouncerGauges,
    IBouncer,
    IBouncerMetrics,
    IRequester,
    NoMetrics,
)
from twisted_keycard.bouncer._login import (
    Authentication,
    Challengers,
    Issuer,
    Throttler,
)
from twisted_keycard.bouncer._revocation import Revoker
from twisted_keycard.bouncer._seats import SeatQueue
from twisted_keycard.bouncer._settings import (
    ExchangeLimits,
    Quota,
    SeatQueuePolicy,
    Throttle,
    TokenPolicy,
    Upkeep,
)
from twisted_keycard.bouncer._upkeep import Flushed, ServiceUpkeep
from twisted_keycard.keycard import Keycard
from twisted_keycard.store import (
    IKeycardStore,
    IKeyringStore,
    IRevocationStore,
    ISeatQueue,
    IssuedKeycard,
    IStoreHealth,
    IThrottleStore,
    MemoryStore,
    Revocation,
)
from twisted_keycard.tokens import (
    KeyringHolder,
    RevocationMirror,
    TokenChecker,
    UnknownKey,
)

#: Bytes of randomness in a keycard id (192 bits).
ID_BYTES = 24

#: Seconds an issued keycard stays valid, by default.
DEFAULT_DURATION = 3600.0


def newKeycardId() -> str:
    """
    A fresh keycard id from the operating system's CSPRNG: 192 random bits
    in base64url, drawn again if it would start with C{-}, so that an id
    never reads as an option on a command line (C{keycard revoke ID}).
    """
    while True:
        # secrets.token_urlsafe, in C calls only (24 bytes: no padding).
        keycardId = b2a_base64(urandom(ID_BYTES), newline=False).translate(_URLSAFE)
        if keycardId[0] != 45:  # "-"
            return keycardId.decode("ascii")


#: Seconds after a failed start (the store unreachable) before it is tried
#: again, and the longest wait between tries (each doubles the last).
START_RETRY = 1.0
START_RETRY_MAX = 30.0

#: The two characters base64url writes differently.
_URLSAFE = bytes.maketrans(b"+/", b"-_")


#: Follow intervals without a read of the store's revocations after which
#: a running bouncer counts its store as down (see L{TokenPolicy}).
STALE_INTERVALS = 3


@implementer(IBouncer)
class Bouncer(Service):
    """
    Checks keycards with twisted.cred checkers and keeps the ones it issued.

    As a service, it loads the keyring when it starts, follows the
    revocations and key rotations other bouncers record in a shared store,
    holds a lease on the keycards it issues (so that their seats are freed
    when it is killed), and flushes expired entries from the store.

    @ivar name: the bouncer's name, set in the keycards it checks.
    @ivar store: the L{IKeycardStore} of issued keycards.
    @ivar keys: the keyring holder, when the bouncer issues tokens.
    @ivar lease: the L{Lease} under which the running bouncer holds its
        keycards, when the store keeps leases (L{ILeaseStore}).
    @ivar throttler: the L{Throttler} that counts failed logins, when the
        bouncer throttles them.
    """

    log = Logger()
    name: str

    def __init__(
        self,
        checkers: Iterable[ICredentialsChecker],
        store: IKeycardStore | None = None,
        *,
        clock: IReactorTime,
        name: str = "bouncer",
        duration: float = DEFAULT_DURATION,
        maxLifetime: float | None = None,
        limits: ExchangeLimits = ExchangeLimits(),  # noqa: B008 - frozen
        tokens: TokenPolicy | None = None,
        quota: Quota | None = None,
        seatQueue: SeatQueuePolicy | None = None,
        policy: CompositePolicy | None = None,
        throttle: Throttle | None = None,
        upkeep: Upkeep = Upkeep(),  # noqa: B008 - frozen
        newId: Callable[[], str] = newKeycardId,
        metrics: IBouncerMetrics | None = None,
    ) -> None:
        """
        @param checkers: twisted.cred checkers; those that are also
            L{IChallenger}s start the exchanges of their keycard classes.
        @param store: where issued keycards are recorded; a L{MemoryStore}
            by default.
        @param clock: the reactor's time, for expiry.
        @param duration: seconds an issued keycard stays valid, and by how
            much L{keepAlive} renews it.
        @param maxLifetime: seconds after issue past which L{keepAlive} no
            longer renews a keycard; C{None} for no limit.
        @param limits: limits on exchanges in progress (in all, per client
            address group and per connection).
        @param tokens: issue a signed token with each keycard, and take
            token keycards; the keyring is kept in C{store}, which must then
            provide L{IKeyringStore} and L{IRevocationStore}.
        @param quota: limits on keycards held at once.
        @param seatQueue: a queue for the C{quota}'s seat pool, for
            clients that ask to wait for a seat (see L{SeatQueuePolicy});
            the store must provide L{ISeatQueue} and L{IKeyringStore} (the
            queue tickets are signed with the token keyring).
        @param policy: a boolean expression over algorithms every keycard
            must satisfy (see L{CompositePolicy}).
        @param throttle: limits on failed logins per account and address;
            the store must provide L{IThrottleStore}.
        @param upkeep: how often the running bouncer follows and flushes
            the store, and how long its lease lasts.
        @param metrics: told what the bouncer decides (see
            L{twisted_keycard.metrics.PrometheusMetrics}); nothing is kept
            by default.
        @raise ValueError: if two challengers claim one keycard class, or
            the store cannot keep what tokens or throttling need.
        """
        if duration <= 0:
            raise ValueError("duration must be positive")
        self.name = name
        self.store = store if store is not None else MemoryStore()
        self.clock = clock
        self.duration = duration
        self.maxLifetime = maxLifetime
        self.policy = policy
        self.tokens = tokens
        self.upkeep = upkeep
        self.metrics = metrics if metrics is not None else NoMetrics()
        #: This bouncer instance's name in the store: its lease, and the
        #: source of the throttle counts it shares.
        instance = newHolderId(name)
        throttler = None
        if throttle is not None:
            if not IThrottleStore.providedBy(self.store):
                raise ValueError("throttling needs a store that counts failures")
            throttler = Throttler(self.store, clock, throttle, source=instance)
        self.throttler = throttler
        checkers = list(checkers)
        self.keys: KeyringHolder | None = None
        #: The revocations in force, read from the store while running, and
        #: the one place the token checker and the revoker look them up.
        self._mirror: RevocationMirror | None = None
        if IRevocationStore.providedBy(self.store):
            self._mirror = RevocationMirror(clock, tokens.skew if tokens else 0.0)
            # Not current once three follow intervals pass without a read.
            self._mirror.maxLag = STALE_INTERVALS * upkeep.followInterval
        if tokens is not None:
            if not (
                IKeyringStore.providedBy(self.store)
                and IRevocationStore.providedBy(self.store)
            ):
                raise ValueError("tokens need a store that keeps keys and revocations")
            self.keys = KeyringHolder(self.store, clock)
            checkers.append(
                TokenChecker(
                    self.store,
                    self.keys,
                    clock,
                    skew=tokens.skew,
                    maxFamilyLifetime=tokens.maxFamilyLifetime,
                    claims=tokens.claims,
                    mirror=self._mirror,
                    whenStoreDown=tokens.whenStoreDown,
                )
            )
        #: The queue of the seat pool, when the bouncer keeps one.
        self.seatQueue: SeatQueue | None = None
        if seatQueue is not None:
            if quota is None or quota.seatPool is None or quota.seats is None:
                raise ValueError("a seat queue needs a quota with a seat pool")
            if not (
                ISeatQueue.providedBy(self.store)
                and IKeyringStore.providedBy(self.store)
            ):
                raise ValueError("a seat queue needs a store that keeps seat queues")
            if self.keys is None:
                self.keys = KeyringHolder(self.store, clock)
            self.seatQueue = SeatQueue(
                self.store,
                clock,
                self.keys,
                quota.seatPool,
                quota.seats,
                seatQueue,
                upkeep.followInterval,
            )
        challengers = Challengers(checkers)
        self.keycardClasses = challengers.keycardClasses
        self._held = HeldKeycards(
            self.store,
            clock,
            keepReleased=tokens is not None,
            leaseId=instance,
            leaseTime=upkeep.leaseTime,
        )
        self.lease = self._held.lease
        issuer = Issuer(
            self.store,
            clock,
            name,
            duration,
            tokens,
            self.keys,
            quota,
            policy,
            self.lease,
            seatQueue=self.seatQueue,
        )
        self._authentication = Authentication(
            name,
            challengers,
            clock,
            limits,
            throttler,
            issuer,
            self._held,
            newId,
            metrics,
        )
        self._revoker: Revoker | None = None
        if self._mirror is not None:
            self._revoker = Revoker(
                self.store,
                clock,
                self._tokenLifetime(),
                self._expireRevoked,
                self._mirror,
            )
        self._upkeep = ServiceUpkeep(
            self.store,
            clock,
            upkeep,
            keys=self.keys,
            lease=self.lease,
            mirror=self._mirror,
            revokedElsewhere=self._revokedElsewhere,
            throttler=throttler,
            running=lambda: bool(self.running),
        )
        self.started: Deferred[None] = succeed(None)
        #: The next try of a start that failed, if one is due.
        self._restart: IDelayedCall | None = None
        self.metrics.watch(self._gauges(quota, throttle, issuer))

    def _gauges(
        self, quota: Quota | None, throttle: Throttle | None, issuer: Issuer
    ) -> BouncerGauges:
        """
        What the metrics read, when they are collected, of this bouncer and
        its store.
        """
        store = self.store
        health = store if IStoreHealth.providedBy(store) else None
        pool = quota.seatPool if quota is not None else None
        seats = quota.seats if quota is not None else None

        def seatPools() -> dict[str, tuple[int, int]]:
            if pool is None or seats is None:
                return {}
            records = self._held.records.values()
            return {pool: (sum(1 for r in records if r.seatPool == pool), seats)}

        def seatShares() -> dict[str, tuple[int, int | None]]:
            if pool is None or quota is None:
                return {}
            mine = Counter(
                r.avatarId for r in self._held.records.values() if r.seatPool == pool
            )
            return {pool: (max(mine.values(), default=0), quota.seatsPerAvatar)}

        def seatRefusals() -> dict[str, dict[str, int]]:
            if pool is None:
                return {}
            return {pool: dict(issuer.seatRefusals)}

        def seatQueues() -> dict[str, tuple[int, int, float]]:
            queue = self.seatQueue
            return {} if queue is None else {queue.pool: queue.gauges()}

        def lease() -> tuple[int, float] | None:
            lease = self.lease
            if lease is None or not lease.active or lease.renewedAt is None:
                return None
            left = lease.renewedAt + lease.leaseTime - self.clock.seconds()
            return len(lease.holding()), left

        def signingKey() -> tuple[str, float] | None:
            keyring = self.keys.keyring if self.keys is not None else None
            if keyring is None:
                return None
            try:
                key = keyring.signing
            except UnknownKey:
                return None
            return key.kid, self.clock.seconds() - key.created

        throttler = self.throttler
        return BouncerGauges(
            kinds=[c.kind for c in self.keycardClasses],
            held=lambda: len(self._held.records),
            pending=self._pendingCount,
            followLag=self._upkeep.followLag,
            requesters=lambda: self._held.requesterNames,
            seatPools=seatPools,
            seatShares=seatShares,
            seatRefusals=seatRefusals,
            seatQueues=seatQueues,
            lease=lease,
            signingKey=signingKey,
            failureRecords=lambda: None if throttler is None else len(throttler),
            failureRecordsMax=throttle.maxKeys if throttle is not None else None,
            storeUp=lambda: None if health is None else bool(health.storeUp()),
            writesQueued=lambda: None if health is None else int(health.writesQueued()),
        )

    def _pendingCount(self) -> int:
        pending = self._authentication.pending
        pending.purge()
        return len(pending)

    @property
    def held(self) -> dict[str, IssuedKeycard]:
        """
        The keycards this bouncer issued that a client holds, by id.
        """
        return self._held.records

    def audienceOf(self, keycardId: str) -> tuple[str, ...]:
        """
        The audience of a keycard this bouncer issued and a client holds:
        the requester names its token is taken through, as written in it
        (or as it would be, had none been asked for).  A face that is no
        requester of its own, such as ticket granting, takes a keycard
        only when its name is among them.

        @return: the names; none for a keycard not held, or adopted from
            another bouncer.
        """
        return self._held.audienceOf(keycardId)

    def _tokenLifetime(self) -> float:
        skew = self.tokens.skew if self.tokens is not None else 0.0
        return self.duration + skew

    # Requesters

    def registerRequester(self, name: str, requester: IRequester) -> None:
        self._held.registerRequester(name, requester)

    def unregisterRequester(self, name: str) -> None:
        self._held.unregisterRequester(name)

    def addEndObserver(self, observer: Callable[[list[str]], object]) -> None:
        """
        Call C{observer} with the ids of keycards that end: expired,
        revoked, or removed because their client left (what depends on a
        keycard, such as a brokered session, ends with it).
        """
        self._held.addEndObserver(observer)

    def removeEndObserver(self, observer: Callable[[list[str]], object]) -> None:
        """
        Stop calling C{observer}.
        """
        self._held.removeEndObserver(observer)

    # Exchanges

    def authenticate(
        self, keycard: Keycard, connection: Hashable | None = None
    ) -> Deferred[Keycard]:
        """
        See L{IBouncer.authenticate}.  A message that arrives while the
        running bouncer is still starting (reading the keyring and the
        revocations in force, taking its lease) waits until it has started,
        so that nothing is issued outside its lease or checked against
        revocations not yet read.
        """
        if self.started.called:
            return deferNow(self._authentication.authenticate(keycard, connection))
        return Deferred.fromCoroutine(self._afterStart(keycard, connection))

    async def _afterStart(
        self, keycard: Keycard, connection: Hashable | None
    ) -> Keycard:
        started: Deferred[None] = Deferred()

        def ended(result: object) -> object:
            # Either way: a failed start is logged by startService.
            started.callback(None)
            return result

        self.started.addBoth(ended)
        await started
        return await self._authentication.authenticate(keycard, connection)

    def connectionLost(self, connection: Hashable) -> None:
        self._authentication.abandon(connection)

    # Issued keycards

    def removeKeycardId(self, keycardId: str) -> Deferred[bool]:
        return deferNow(self._held.remove(keycardId))

    def expireKeycardIds(self, keycardIds: Sequence[str]) -> Deferred[int]:
        return Deferred.fromCoroutine(self._held.expire(keycardIds))

    def adopt(self, requesterName: str, keycardIds: Sequence[str]) -> Deferred[int]:
        """
        Take charge of keycards issued through C{requesterName} before a
        restart, or by another bouncer on this store, whose clients that
        requester still holds: expire them when their time comes and tell
        the requester.  Their expiry is left as it is.

        @return: a L{Deferred} firing with the number of keycards adopted.
        """
        return Deferred.fromCoroutine(self._held.adopt(requesterName, keycardIds))

    def expireRequester(self, requesterName: str) -> Deferred[int]:
        """
        Expire every keycard issued through C{requesterName}, as when that
        requester has been silent too long.

        @return: a L{Deferred} firing with the number of ids expired.
        """
        return Deferred.fromCoroutine(self._held.expireRequester(requesterName))

    def keepAlive(self, requesterName: str, keycardIds: Sequence[str]) -> Deferred[int]:
        return Deferred.fromCoroutine(
            self._held.keepAlive(requesterName, keycardIds, self.maxLifetime)
        )

    # Revocation

    def revoker(self) -> Revoker:
        """
        The L{Revoker} that drops this bouncer's clients of what it revokes.

        @raise ValueError: if the store keeps no revocations.
        """
        if self._revoker is None:
            raise ValueError("this bouncer's store keeps no revocations")
        return self._revoker

    def revokeKeycardIds(
        self, keycardIds: Sequence[str], reason: str = ""
    ) -> Deferred[int]:
        """
        See L{Revoker.revokeKeycardIds}; the clients holding them are dropped.
        """
        return self.revoker().revokeKeycardIds(keycardIds, reason)

    def revokeAvatar(self, avatarId: str, reason: str = "") -> Deferred[int]:
        """
        See L{Revoker.revokeAvatar}; the clients holding them are dropped.
        """
        return self.revoker().revokeAvatar(avatarId, reason)

    def revokeRequester(self, requesterName: str, reason: str = "") -> Deferred[int]:
        """
        See L{Revoker.revokeRequester}; the clients holding them are dropped.
        """
        return self.revoker().revokeRequester(requesterName, reason)

    def reevaluate(
        self, revoked: Mapping[str, Collection[str]] | None = None
    ) -> Deferred[int]:
        """
        Evaluate the policy again for every keycard this bouncer holds, as
        when an algorithm revokes some of them (C{revoked} maps an
        algorithm's name to the keycard ids it revokes) or its rules changed;
        expire the keycards for which the whole expression is now false.

        @return: a L{Deferred} firing with the number expired.
        """
        policy = self.policy
        if policy is None:
            return succeed(0)
        revoked = revoked or {}
        doomed = [
            keycardId
            for keycardId, record in self.held.items()
            if not policy.allows(
                record, [name for name, ids in revoked.items() if keycardId in ids]
            )
        ]
        return Deferred.fromCoroutine(self._held.expire(doomed))

    async def _expireRevoked(self, keycardIds: list[str]) -> int:
        expired = await self._held.expire(keycardIds)
        if expired:
            self.metrics.revokedHeld(expired)
        return expired

    async def _revokedElsewhere(self, revocations: list[Revocation]) -> None:
        now = self.clock.seconds()
        self.metrics.revocationsSeen([now - r.revokedAt for r in revocations])
        hit = self._held.hitBy(revocations)
        if hit:
            await self._expireRevoked(hit)

    # The service

    def startService(self) -> None:
        """
        Start: load the keyring, read the revocations in force, take the
        lease, then follow the store.  A start that fails (the store went
        away meanwhile) is logged and tried again, after
        L{START_RETRY} seconds and then twice as long each time, up to
        L{START_RETRY_MAX}, until it succeeds or the bouncer stops: else
        a bouncer would run on without following revocations or renewing
        its lease.  Messages wait for the first try only (see
        L{authenticate}).
        """
        super().startService()  # type: ignore[no-untyped-call]
        self.started = Deferred.fromCoroutine(self._upkeep.start())
        self.started.addErrback(self._startFailed, START_RETRY)

    def _startFailed(self, failure: Failure, delay: float) -> None:
        self.log.failure(
            "bouncer {name} failed to start; trying again in {delay:g} s",
            failure,
            name=self.name,
            delay=delay,
        )
        if self.running:
            self._restart = self.clock.callLater(
                delay, self._startAgain, min(2 * delay, START_RETRY_MAX)
            )

    def _startAgain(self, delay: float) -> None:
        self._restart = None
        if not self.running:
            return
        again = Deferred.fromCoroutine(self._upkeep.start())
        again.addCallback(
            lambda _: self.log.info("bouncer {name} started", name=self.name)
        )
        again.addErrback(self._startFailed, delay)

    def stopService(self) -> Deferred[None]:
        """
        Stop following and flushing the store and expiring keycards.

        @return: a L{Deferred} firing once the store has the throttle
            counts not sent yet.
        """
        if self._restart is not None and self._restart.active():
            self._restart.cancel()
        self._restart = None
        sent = self._upkeep.stop()
        self._held.stop()
        if self.seatQueue is not None:
            self.seatQueue.stop()
        super().stopService()  # type: ignore[no-untyped-call]
        return sent

    def flush(self) -> Deferred[Flushed]:
        """
        Remove expired keycards and revocations, and failed logins older
        than the throttling window, from the store.

        @return: a L{Deferred} firing with what was removed.
        """
        return self._upkeep.flusher.flush()
