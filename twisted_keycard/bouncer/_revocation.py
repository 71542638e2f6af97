"""
Revocation: what to write in the revocation store so that every bouncer
refuses a keycard, its token and its family, and the revocations in force
kept in memory by a running bouncer, so that a check costs no store query.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from twisted_keycard._printable import printable, printables
from twisted_keycard.store._interfaces import (
    IKeycardStore,
    IRevocationStore,
    IssuedKeycard,
    Revocation,
)
from twisted_keycard.tokens._checker import FAMILY

#: Seconds of expiry time that share one bucket of the purge.
BUCKET = 60.0


class RevocationMirror:
    """
    The revocations in force, by keycard id or mark (C{avatar:...},
    C{requester:...}, C{family:...}), each kept until C{grace} seconds past
    its expiry, when whatever it refuses has expired anyway; about 300
    bytes each.

    Like a store, it keeps the later expiry of an id revoked twice.

    @ivar marks: how many of the revocations it holds are marks (their key
        has a colon) rather than keycard ids: while there are none, a token
        check need not look its marks up.
    """

    def __init__(self, clock: IReactorTime, grace: float = 0.0) -> None:
        """
        @param clock: tells when a revocation has expired.
        @param grace: seconds a revocation is kept past its expiry (the
            clock skew tolerated at a token's expiry).
        """
        self.clock = clock
        self.grace = grace
        self._revoked: dict[str, Revocation] = {}
        #: Ids by the bucket of their expiry, for the purge.
        self._expiring: dict[int, list[str]] = {}
        self._purged = float("-inf")
        self.marks = 0

    def __len__(self) -> int:
        return len(self._revoked)

    def update(self, revocations: Iterable[Revocation]) -> None:
        """
        Take revocations read from the store or just recorded in it (a
        follower calls this with each batch it reads, empty ones too), and
        forget those past their expiry.
        """
        revoked = self._revoked
        expiring = self._expiring
        for revocation in revocations:
            key = revocation.keycardId
            known = revoked.get(key)
            if known is not None:
                if known.expires >= revocation.expires:
                    continue
            elif ":" in key:
                self.marks += 1
            revoked[key] = revocation
            bucket = int(revocation.expires // BUCKET)
            expiring.setdefault(bucket, []).append(key)
        self._purge()

    def _purge(self) -> None:
        """
        Forget the revocations whose expiry, plus the grace, has passed, a
        bucket at a time.
        """
        cutoff = self.clock.seconds() - self.grace
        last = int(cutoff // BUCKET) - 1
        if last <= self._purged:
            return
        self._purged = last
        revoked = self._revoked
        for bucket in [b for b in self._expiring if b <= last]:
            for key in self._expiring.pop(bucket):
                revocation = revoked.get(key)
                if revocation is not None and revocation.expires < cutoff:
                    del revoked[key]
                    if ":" in key:
                        self.marks -= 1

    def _inForce(self, key: str) -> Revocation | None:
        revocation = self._revoked.get(key)
        if revocation is None:
            return None
        if revocation.expires + self.grace < self.clock.seconds():
            return None
        return revocation

    def isRevoked(self, keycardId: str) -> bool:
        """
        Whether C{keycardId} is revoked, as L{IRevocationStore.isRevoked}.
        """
        return keycardId in self._revoked and self._inForce(keycardId) is not None

    def revocationsOf(self, keys: Sequence[str]) -> list[Revocation]:
        """
        The revocations in force of C{keys}, as
        L{IRevocationStore.revocationsOf}.
        """
        revoked = self._revoked
        if revoked.keys().isdisjoint(keys):
            return []
        found = []
        for key in keys:
            revocation = self._inForce(key)
            if revocation is not None:
                found.append(revocation)
        return found


#: Prefixes of the marks that revoke by avatar and by requester.
AVATAR = "avatar:"
REQUESTER = "requester:"


def _ends(record: IssuedKeycard) -> float:
    """
    When a keycard and its token would have expired anyway.
    """
    return max(record.expires, record.issued + record.duration)


def revocationsFor(
    keycardIds: Iterable[str],
    families: dict[str, list[IssuedKeycard]],
    now: float,
    tokenLifetime: float,
    reason: str,
) -> list[Revocation]:
    """
    One revocation per id and one mark per family, each kept until every
    keycard and token it refuses would have expired anyway, and at least
    for the longest a token issued now could live (an id with no record,
    a token issued while the revocation is written).
    """
    byId = {r.keycardId: r for members in families.values() for r in members}
    floor = now + tokenLifetime
    revocations = []
    for keycardId in dict.fromkeys(keycardIds):
        record = byId.get(keycardId)
        expires = floor if record is None else max(floor, _ends(record))
        revocations.append(Revocation(keycardId, expires, now, reason))
    for familyId, members in families.items():
        expires = max([floor, *map(_ends, members)])
        revocations.append(Revocation(FAMILY + familyId, expires, now, reason))
    return revocations


async def _nobodyHolds(keycardIds: list[str]) -> None:
    """
    The default of L{Revoker.onRevoked}: no keycard is held here.
    """


class Revoker:
    """
    Revokes keycards in a store that keeps both issued keycards and
    revocations.  A bouncer uses one and drops the clients of what it
    revoked; the C{keycard revoke} command uses one on its own.
    """

    log = Logger()

    def __init__(
        self,
        store: IKeycardStore,
        clock: IReactorTime,
        tokenLifetime: float,
        onRevoked: Callable[[list[str]], Awaitable[object]] = _nobodyHolds,
        mirror: RevocationMirror | None = None,
    ) -> None:
        """
        @param store: must also provide L{IRevocationStore}.
        @param tokenLifetime: the longest a token issued now could live
            (duration and clock skew): how long to keep the revocation of a
            keycard with no record.
        @param onRevoked: called with the ids revoked, once they are durable.
        @param mirror: the revocations in force of the bouncer this revoker
            works for, given each revocation once it is durable, so that
            the bouncer refuses its tokens at once.
        @raise ValueError: if the store keeps no revocations.
        """
        if not IRevocationStore.providedBy(store):
            raise ValueError("this store keeps no revocations")
        self.store = store
        self.clock = clock
        self.tokenLifetime = tokenLifetime
        self.onRevoked = onRevoked
        self.mirror = mirror

    def revokeKeycardIds(
        self, keycardIds: Sequence[str], reason: str = ""
    ) -> Deferred[int]:
        """
        Revoke keycards and every token of their families (see the module's
        docstring).  An id with no record left still names its children's
        family.

        @return: a L{Deferred} firing, once the revocation is durable, with
            the number of issued keycards on record that were revoked.
        """
        return Deferred.fromCoroutine(self._revokeIds(keycardIds, reason))

    async def _revokeIds(self, keycardIds: Sequence[str], reason: str) -> int:
        records = []
        for keycardId in keycardIds:
            record = await self.store.get(keycardId)
            if record is not None:
                records.append(record)
            else:
                # Its record expired; the children its token made name its
                # family.
                records.extend(await self.store.byParent(keycardId))
        return await self._revoke(keycardIds, records, [], reason)

    def revokeAvatar(self, avatarId: str, reason: str = "") -> Deferred[int]:
        """
        Revoke every keycard and token issued to C{avatarId} until now
        (their families too).

        @return: as L{revokeKeycardIds}.
        """
        return Deferred.fromCoroutine(self._revokeBy(AVATAR, avatarId, reason))

    def revokeRequester(self, requesterName: str, reason: str = "") -> Deferred[int]:
        """
        Revoke every keycard and token issued through requester
        C{requesterName} until now, and their families (whose later members
        may have come through other requesters).

        @return: as L{revokeKeycardIds}.
        """
        return Deferred.fromCoroutine(self._revokeBy(REQUESTER, requesterName, reason))

    async def _revokeBy(self, kind: str, name: str, reason: str) -> int:
        if kind == AVATAR:
            records = await self.store.byAvatar(name)
        else:
            records = await self.store.byRequester(name)
        now = self.clock.seconds()
        mark = Revocation(kind + name, now + self.tokenLifetime, now, reason)
        return await self._revoke([], records, [mark], reason)

    async def _revoke(
        self,
        keycardIds: Sequence[str],
        records: list[IssuedKeycard],
        marks: list[Revocation],
        reason: str,
    ) -> int:
        store = self.store
        assert IRevocationStore.providedBy(store)
        families: dict[str, list[IssuedKeycard]] = {}
        for record in records:
            if record.familyId is not None and record.familyId not in families:
                families[record.familyId] = await store.byFamily(record.familyId)
        now = self.clock.seconds()
        revocations = revocationsFor(
            keycardIds, families, now, self.tokenLifetime, reason
        )
        await store.revoke(revocations + marks)
        if self.mirror is not None:
            self.mirror.update(revocations + marks)
        reached = {r.keycardId: r for r in records}
        for members in families.values():
            reached.update((r.keycardId, r) for r in members)
        ids = list(dict.fromkeys([*keycardIds, *reached]))
        self.log.info(
            "revoked {count} keycard(s) in {families} families {marks}: {reason}",
            event="keycard.revoked",
            count=len(ids),
            families=len(families),
            marks=printables(m.keycardId for m in marks),
            reason=printable(reason),
        )
        await self.onRevoked(ids)
        return len(reached)
