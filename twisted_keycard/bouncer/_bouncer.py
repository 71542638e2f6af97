"""
The in-process bouncer: challenges keycards, hands them to checkers, issues
keycard ids and expires them.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

import attrs
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from twisted_keycard.bouncer._composite import CompositePolicy
from twisted_keycard.bouncer._interfaces import IBouncer, IRequester
from twisted_keycard.bouncer._pending import PendingExchanges
from twisted_keycard.bouncer._policy import Quota, Throttle, TokenPolicy
from twisted_keycard.bouncer._revocations import (
    RevocationFollower,
)
from twisted_keycard.bouncer._revoker import BouncerRevocation
from twisted_keycard.bouncer._throttle import Throttler
from twisted_keycard.bouncer._timers import ExpiryTimers
from twisted_keycard.bouncer._upkeep import BouncerUpkeep
from twisted_keycard.error import KeycardDenied, KeycardRefused, ProtocolError
from twisted_keycard.keycard._interfaces import IChallenger, IExchange
from twisted_keycard.keycard._keycard import Keycard, KeycardState
from twisted_keycard.store import (
    IKeyringStore,
    IRevocationStore,
    IThrottleStore,
    MemoryStore,
)
from twisted_keycard.store._interfaces import IKeycardStore
from twisted_keycard.store._records import IssuedKeycard
from twisted_keycard.tokencard import TokenChecker
from twisted_keycard.tokens._format import TokenClaims, sign
from twisted_keycard.tokens._holder import KeyringHolder

#: Bytes of randomness in a keycard id (192 bits).
ID_BYTES = 24


def newKeycardId() -> str:
    """
    A fresh keycard id from the operating system's CSPRNG.
    """
    return secrets.token_urlsafe(ID_BYTES)


@attrs.define
class _Attempt:
    """
    Internal: what one message of an exchange is about, for throttling.
    """

    account: str | None = None


class _Refusal(Exception):
    """
    Internal: why a keycard is refused, for the log only.
    """


@implementer(IBouncer)
class Bouncer(BouncerRevocation, BouncerUpkeep):
    """
    Checks keycards with twisted.cred checkers and keeps the ones it issued.

    As a service, it loads the keyring when it starts, follows the
    revocations other bouncers record in a shared store, and flushes
    expired entries from the store.

    @ivar name: the bouncer's name, set in the keycards it checks.
    @ivar store: the L{IKeycardStore} of issued keycards.
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
        duration: float = 3600.0,
        maxLifetime: float | None = None,
        challengeTimeout: float = 30.0,
        maxPending: int = 10_000,
        maxPendingPerAddress: int = 100,
        tokens: TokenPolicy | None = None,
        quota: Quota | None = None,
        policy: CompositePolicy | None = None,
        throttle: Throttle | None = None,
        followInterval: float = 1.0,
        flushInterval: float = 300.0,
        newId: Callable[[], str] = newKeycardId,
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
        @param challengeTimeout: seconds a client has to answer a challenge.
        @param maxPending: exchanges in progress at most, in all.
        @param maxPendingPerAddress: exchanges in progress at most from one
            client address.
        @param tokens: issue a signed token with each keycard, and take
            token keycards; the keyring is kept in C{store}, which must then
            provide L{IKeyringStore} and L{IRevocationStore}.
        @param quota: limits on keycards held at once.
        @param policy: a boolean expression over algorithms every keycard
            must satisfy (see L{twisted_keycard.bouncer._composite}).
        @param throttle: limits on failed logins per account and address;
            the store must provide L{IThrottleStore}.
        @param followInterval: seconds between two reads of the revocations
            other bouncers recorded in the store.
        @param flushInterval: seconds between two flushes of expired
            entries from the store.
        @raise ValueError: if two challengers claim one keycard class, or
            tokens are asked of a store that cannot keep them.
        """
        if duration <= 0:
            raise ValueError("duration must be positive")
        self.name = name
        self.store = store if store is not None else MemoryStore()
        self.clock = clock
        self.duration = duration
        self.maxLifetime = maxLifetime
        self.quota = quota
        self.policy = policy
        self._throttler: Throttler | None = None
        if throttle is not None:
            if not IThrottleStore.providedBy(self.store):
                raise ValueError("throttling needs a store that counts failures")
            self._throttler = Throttler(self.store, clock, throttle)
        self.tokens = tokens
        self._newId = newId
        self._checkers: list[ICredentialsChecker] = list(checkers)
        self.keys: KeyringHolder | None = None
        if tokens is not None:
            if not (
                IKeyringStore.providedBy(self.store)
                and IRevocationStore.providedBy(self.store)
            ):
                raise ValueError("tokens need a store that keeps keys and revocations")
            self.keys = KeyringHolder(self.store, clock)
            self._checkers.append(
                TokenChecker(self.store, self.keys, clock, skew=tokens.skew)
            )
        self._challengers: dict[str, IChallenger] = {}
        classes: list[type[Keycard]] = []
        for checker in self._checkers:
            if not IChallenger.providedBy(checker):
                continue
            for cls in checker.keycardClasses:
                if cls.keycardType in self._challengers:
                    raise ValueError(f"two challengers for {cls.keycardType}")
                self._challengers[cls.keycardType] = checker
                classes.append(cls)
        self.keycardClasses = tuple(classes)
        self._pending = PendingExchanges(
            clock, challengeTimeout, maxPending, maxPendingPerAddress
        )
        self._timers = ExpiryTimers(clock, self._timersExpired)
        self._requesters: dict[str, IRequester] = {}
        #: The keycards this bouncer issued that a client holds.
        self.held: dict[str, IssuedKeycard] = {}
        self.followInterval = followInterval
        self.flushInterval = flushInterval
        self._follower: RevocationFollower | None = None
        self._flushLoop: LoopingCall | None = None

    # Requesters

    def registerRequester(self, name: str, requester: IRequester) -> None:
        self._requesters[name] = requester

    def unregisterRequester(self, name: str) -> None:
        self._requesters.pop(name, None)

    # Exchanges

    def authenticate(self, keycard: Keycard) -> Deferred[Keycard]:
        return Deferred.fromCoroutine(self._authenticate(keycard))

    async def _authenticate(self, keycard: Keycard) -> Keycard:
        attempt = _Attempt()
        try:
            if not isinstance(keycard, Keycard):
                raise _Refusal("not a keycard")
            if keycard.keycardType not in self._challengers:
                raise _Refusal("keycard class not taken here")
            if keycard.state is not KeycardState.REQUESTING:
                raise _Refusal(f"keycard sent in state {keycard.state.name}")
            # Whatever the client claims in the fields the bouncer sets is
            # dropped before anything reads it.
            keycard.avatarId = keycard.token = None
            keycard.duration = keycard.expires = None
            keycard.bouncerName = self.name
            if keycard.id is None:
                return await self._begin(keycard, attempt)
            return await self._continue(keycard, attempt)
        except (_Refusal, ProtocolError, UnauthorizedLogin) as e:
            self._refused(keycard, str(e) or type(e).__name__)
            keycard.state = KeycardState.REFUSED
            if self._throttler is not None:
                await self._throttler.failed(attempt.account, keycard.address)
            raise KeycardRefused() from None
        except KeycardDenied:
            raise
        except Exception:
            # A bug or a failing store: logged here, never sent to the peer.
            self.log.failure("checking a keycard failed")
            raise KeycardDenied("the bouncer failed; try again later") from None

    async def _begin(self, keycard: Keycard, attempt: _Attempt) -> Keycard:
        attempt.account = keycard.account()
        if self._throttler is not None:
            await self._throttler.check(attempt.account, keycard.address)
        keycardId = self._newId()
        entry = self._pending.reserve(
            keycardId, keycard.keycardType, keycard.address, keycard.requesterName
        )
        try:
            challenger = self._challengers[keycard.keycardType]
            exchange: IExchange = await maybeDeferred(challenger.prime, keycard)
            keycard.id = keycardId
            needsAnswer = exchange.challenge(keycard)
        except BaseException:
            self._pending.take(keycardId)
            raise
        if needsAnswer:
            entry.exchange = exchange
            entry.account = attempt.account
            return keycard
        self._pending.take(keycardId)
        return await self._check(keycard, exchange)

    async def _continue(self, keycard: Keycard, attempt: _Attempt) -> Keycard:
        assert keycard.id is not None
        entry = self._pending.take(keycard.id)
        if entry is None or entry.exchange is None:
            raise _Refusal("unknown, used or expired keycard id")
        attempt.account = entry.account
        if (entry.keycardType, entry.address, entry.requesterName) != (
            keycard.keycardType,
            keycard.address,
            keycard.requesterName,
        ):
            raise _Refusal("keycard id presented by another client")
        entry.exchange.answer(keycard)
        return await self._check(keycard, entry.exchange)

    def _checkerFor(self, exchange: IExchange) -> ICredentialsChecker:
        for checker in self._checkers:
            for iface in checker.credentialInterfaces:
                if iface.providedBy(exchange):
                    return checker
        raise _Refusal("no checker for these credentials")

    async def _check(self, keycard: Keycard, exchange: IExchange) -> Keycard:
        checker = self._checkerFor(exchange)
        checked: object = await maybeDeferred(checker.requestAvatarId, exchange)
        avatarId = checked.decode("utf-8") if isinstance(checked, bytes) else checked
        if not isinstance(avatarId, str):
            raise _Refusal("checker gave no avatar id")
        exchange.conclude(keycard)
        assert keycard.id is not None
        now = self.clock.seconds()
        quota = self.quota
        record = IssuedKeycard(
            keycardId=keycard.id,
            avatarId=avatarId,
            requesterName=keycard.requesterName,
            bouncerName=self.name,
            keycardType=keycard.keycardType,
            address=keycard.address,
            issued=now,
            duration=self.duration,
            expires=now + self.duration,
            parentId=getattr(exchange, "parentId", None),
            seatPool=quota.seatPool if quota is not None else None,
        )
        if self.policy is not None and not self.policy.allows(record):
            raise _Refusal(f"refused by the policy {self.policy.text!r}")
        token = await self._token(record)
        if quota is None:
            await self.store.add(record)
        else:
            await self.store.addWithin(record, quota.maxPerAvatar, quota.seats)
        self.held[record.keycardId] = record
        self._timers.schedule(record.keycardId, record.expires)
        keycard.state = KeycardState.AUTHENTICATED
        keycard.avatarId = avatarId
        keycard.duration = record.duration
        keycard.expires = record.expires
        keycard.token = token
        self.log.info(
            "keycard {keycardId} issued to {avatarId} via {requesterName}"
            " from {address}, expires {expires}",
            keycardId=record.keycardId,
            avatarId=avatarId,
            requesterName=record.requesterName,
            address=record.address,
            expires=record.expires,
        )
        return keycard

    async def _token(self, record: IssuedKeycard) -> str | None:
        if self.tokens is None or self.keys is None:
            return None
        keyring = await self.keys.current()
        claims = TokenClaims(
            keycardId=record.keycardId,
            avatarId=record.avatarId,
            issued=record.issued,
            expires=record.expires,
            bouncerName=self.name,
            requesterName=record.requesterName,
            address=record.address if self.tokens.bindAddress else None,
            parentId=record.parentId,
            claims=self.tokens.claims,
        )
        return sign(claims, keyring.signing)

    def _refused(self, keycard: object, reason: str) -> None:
        self.log.info(
            "keycard refused: {reason} ({keycardType} via {requesterName}"
            " from {address})",
            reason=reason,
            keycardType=getattr(keycard, "keycardType", type(keycard).__name__),
            requesterName=getattr(keycard, "requesterName", None),
            address=getattr(keycard, "address", None),
        )

    # Issued keycards

    def removeKeycardId(self, keycardId: str) -> Deferred[bool]:
        return Deferred.fromCoroutine(self._remove(keycardId))

    async def _remove(self, keycardId: str) -> bool:
        self._timers.cancel(keycardId)
        self.held.pop(keycardId, None)
        if self.tokens is not None:
            # Its token stays valid: keep the record, counted no more.
            record = await self.store.release(keycardId)
        else:
            record = await self.store.remove(keycardId)
        if record is not None:
            self.log.info("keycard {keycardId} removed", keycardId=keycardId)
        return record is not None

    def expireKeycardIds(self, keycardIds: Sequence[str]) -> Deferred[int]:
        return Deferred.fromCoroutine(self._expire(keycardIds))

    def _timersExpired(self, keycardIds: list[str]) -> None:
        d = self.expireKeycardIds(keycardIds)
        d.addErrback(lambda f: self.log.failure("expiring keycards failed", f))

    async def _expire(self, keycardIds: Sequence[str]) -> int:
        byRequester: dict[str | None, list[str]] = defaultdict(list)
        for keycardId in keycardIds:
            self._timers.cancel(keycardId)
            held = self.held.pop(keycardId, None)
            record = await self.store.remove(keycardId)
            holder = held if held is not None else record
            if holder is not None and holder.held:
                byRequester[holder.requesterName].append(keycardId)
        for requesterName, ids in byRequester.items():
            self.log.info(
                "{count} keycard(s) expired via {requesterName}: {keycardIds}",
                count=len(ids),
                requesterName=requesterName,
                keycardIds=ids,
            )
            requester = self._requesters.get(requesterName or "")
            if requester is None:
                continue
            try:
                await maybeDeferred(requester.expireKeycardIds, ids)
            except Exception:
                self.log.failure(
                    "requester {requesterName} failed to expire keycards",
                    requesterName=requesterName,
                )
        return sum(len(ids) for ids in byRequester.values())

    def adopt(self, requesterName: str, keycardIds: Sequence[str]) -> Deferred[int]:
        """
        Take charge of keycards issued through C{requesterName} before a
        restart, or by another bouncer on this store, whose clients that
        requester still holds: expire them when their time comes and tell
        the requester.  Their expiry is left as it is.

        @return: a L{Deferred} firing with the number of keycards adopted.
        """
        return Deferred.fromCoroutine(self._adopt(requesterName, keycardIds))

    async def _adopt(self, requesterName: str, keycardIds: Sequence[str]) -> int:
        adopted = 0
        for keycardId in keycardIds:
            record = await self.store.get(keycardId)
            if record is None or record.requesterName != requesterName:
                continue
            self.held[keycardId] = record
            self._timers.schedule(keycardId, record.expires)
            adopted += 1
        return adopted

    def expireRequester(self, requesterName: str) -> Deferred[int]:
        """
        Expire every keycard issued through C{requesterName}, as when that
        requester has been silent too long.

        @return: a L{Deferred} firing with the number of ids expired.
        """
        return Deferred.fromCoroutine(self._expireRequester(requesterName))

    async def _expireRequester(self, requesterName: str) -> int:
        ids = {r.keycardId for r in await self.store.byRequester(requesterName)}
        ids.update(k for k, r in self.held.items() if r.requesterName == requesterName)
        return await self._expire(sorted(ids))

    def keepAlive(self, requesterName: str, keycardIds: Sequence[str]) -> Deferred[int]:
        return Deferred.fromCoroutine(self._keepAlive(requesterName, keycardIds))

    async def _keepAlive(self, requesterName: str, keycardIds: Sequence[str]) -> int:
        now = self.clock.seconds()
        renewed = 0
        for keycardId in keycardIds:
            record = await self.store.get(keycardId)
            if record is None or record.requesterName != requesterName:
                continue
            expires = now + record.duration
            if self.maxLifetime is not None:
                expires = min(expires, record.issued + self.maxLifetime)
            if expires <= now:
                continue
            renewedRecord = await self.store.renew(keycardId, expires)
            if renewedRecord is not None and keycardId in self.held:
                self.held[keycardId] = renewedRecord
            self._timers.schedule(keycardId, expires)
            renewed += 1
        return renewed
