"""
Issued keycards and the bouncers' leases in Redis: the part of
L{twisted_keycard.store.redis.RedisStore} that L{IKeycardStore} and
L{ILeaseStore} read, each change one Lua script (see L{_keycardlua}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from twisted_keycard.error import QuotaExceeded
from twisted_keycard.store._records import IssuedKeycard
from twisted_keycard.store.redis import _keycardlua as kc
from twisted_keycard.store.redis._codec import (
    GRACE,
    fromFields,
    number,
    recordFields,
    ttl,
)
from twisted_keycard.store.redis._connection import (
    FLUSH_BATCH,
    RedisConnection,
    Script,
    inBatches,
)

#: Seconds Redis keeps the leases after their last renewal.
LEASES_KEPT = 7 * 86400.0

_SCRIPTS = {
    name: Script(getattr(kc, name))
    for name in [
        "ADD", "REMOVE", "RELEASE", "RENEW", "SELECT", "FLUSH_EXPIRED",
        "COUNT", "RENEW_LEASE", "RELEASE_LAPSED", "HOLD_UNDER",
    ]
}  # fmt: skip

#: Queue a write while Redis is unreachable, or send it: see RedisStore.
Write = Callable[[str, Callable[[], Deferred[Any]]], Deferred[Any]]


class RedisKeycards:
    """
    Issued keycards and leases, in Redis.  Expiries (and so TTLs) are
    counted by C{clock}.
    """

    def __init__(
        self,
        connection: RedisConnection,
        prefix: str,
        clock: IReactorTime,
        write: Write,
    ) -> None:
        """
        @param write: sends a write, or queues it while Redis is
            unreachable (see L{RedisStore}).
        """
        self._connection = connection
        self._prefix = prefix
        self._clock = clock
        self._write = write

    def _run(self, name: str, *args: object) -> Deferred[Any]:
        return self._connection.run(_SCRIPTS[name], [self._prefix, *args])

    def _now(self) -> float:
        return self._clock.seconds()

    def _adding(
        self, record: IssuedKeycard, maxPerAvatar: int | None, poolSize: int | None
    ) -> Callable[[], Deferred[None]]:
        def write() -> Deferred[None]:
            now = self._now()
            d = self._run(
                "ADD",
                ttl(record.expires, now, GRACE),
                "" if maxPerAvatar is None else str(maxPerAvatar),
                "" if poolSize is None else str(poolSize),
                number(record.issued),
                number(now - GRACE),
                *recordFields(record),
            )
            return d.addCallback(self._added, record)

        return write

    @staticmethod
    def _added(outcome: str, record: IssuedKeycard) -> None:
        if outcome == "duplicate":
            raise KeyError(record.keycardId)
        if outcome == "avatar":
            raise QuotaExceeded("too many keycards for this avatar")
        if outcome == "pool":
            raise QuotaExceeded(f"no seat left in pool {record.seatPool!r}")

    def add(self, record: IssuedKeycard) -> Deferred[None]:
        return self._write(
            f"the record of keycard {record.keycardId}",
            self._adding(record, None, None),
        )

    def addWithin(
        self, record: IssuedKeycard, maxPerAvatar: int | None, poolSize: int | None
    ) -> Deferred[None]:
        if maxPerAvatar is None and poolSize is None:
            return self.add(record)
        # Never queued: a seat counted without Redis could be over-granted.
        return self._adding(record, maxPerAvatar, poolSize)()

    def get(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        d = self._connection.execute(
            "HMGET", f"{self._prefix}kc:{keycardId}", *kc.FIELDS
        )
        return d.addCallback(fromFields)

    def remove(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        return self._write(
            f"the removal of keycard {keycardId}",
            lambda: self._run("REMOVE", keycardId).addCallback(fromFields),
        )

    def release(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        return self._write(
            f"the release of keycard {keycardId}",
            lambda: self._run("RELEASE", keycardId).addCallback(fromFields),
        )

    def renew(self, keycardId: str, expires: float) -> Deferred[IssuedKeycard | None]:
        d = self._run(
            "RENEW", keycardId, number(expires), ttl(expires, self._now(), GRACE)
        )
        return d.addCallback(fromFields)

    def select(
        self, index: str, low: str = "-inf", high: str = "+inf"
    ) -> Deferred[list[IssuedKeycard]]:
        d = self._run("SELECT", index, low, high)
        return d.addCallback(
            lambda rows: sorted(
                (r for r in map(fromFields, rows) if r is not None),
                key=lambda r: r.keycardId,
            )
        )

    def flushExpired(self, when: float) -> Deferred[int]:
        return inBatches(
            lambda: self._run("FLUSH_EXPIRED", number(when), str(FLUSH_BATCH))
        )

    def count(self) -> Deferred[int]:
        return self._run("COUNT", number(self._now() - GRACE)).addCallback(int)

    def renewLease(self, holderId: str, expires: float) -> Deferred[bool]:
        keep = ttl(expires, self._now(), LEASES_KEPT)
        d = self._run("RENEW_LEASE", holderId, number(expires), keep)
        return d.addCallback(lambda known: bool(int(known)))

    def releaseLapsed(self, when: float) -> Deferred[int]:
        return self._run("RELEASE_LAPSED", number(when)).addCallback(int)

    def holdUnder(
        self, keycardId: str, holderId: str
    ) -> Deferred[IssuedKeycard | None]:
        return self._run("HOLD_UNDER", keycardId, holderId).addCallback(fromFields)
