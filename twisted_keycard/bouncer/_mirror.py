"""
The revocations in force, kept in memory by a running bouncer, so that a
token check costs no store round trip whatever the store.

A L{RevocationMirror} knows nothing of any store: whoever reads the store's
revocation log (the bouncer's L{RevocationFollower}, from the first
revocation on when the bouncer starts) hands it each batch, and the
bouncer's own L{Revoker} hands it what it has just recorded.  So a
revocation made by this bouncer is in force here at once, and one made
elsewhere (another bouncer, the C{keycard revoke} command) once the
follower has read it: within a follow interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from twisted.internet.interfaces import IReactorTime

from twisted_keycard.store._records import Revocation

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
