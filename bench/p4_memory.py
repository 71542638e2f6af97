"""
P4: memory per held keycard, and the cost of expiring keycards, with a
smaller and a ten times larger number held by one bouncer, on the memory
store and on the SQLite store.  Absolute figures: no peer holds keycards.

Keycards are issued through the bouncer's public path (token keycards
presented to C{Bouncer.authenticate}, tokens on) and expired by the
bouncer's own timers, on a L{Clock}; the bouncer is not started as a
service, so its periodic flush of the store (upkeep, not expiry) stays out
of the timed step.  On SQLite, each expiry deletes its record in its own
committed transaction before the requester is told.  Each store and size
runs in a fresh process, so that resident memory counts only its keycards.

    python -m bench.p4_memory child memory|sqlite COUNT   # one JSON line
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.internet.task import Clock
from zope.interface import implementer

from twisted_keycard import Bouncer, IRequester, KeycardState, MemoryStore
from twisted_keycard.bouncer import TokenPolicy, newKeycardId
from twisted_keycard.store.sqlite import SQLiteStore
from twisted_keycard.tokens import TokenClaims, TokenKeycard, sign

from ._common import Figure, inChild, single

EXPIRED = 1000
IN_FLIGHT = 100
SIZES = {
    ("memory", False): [100_000, 1_000_000],
    ("memory", True): [20_000, 200_000],
    ("sqlite", False): [10_000, 100_000],
    ("sqlite", True): [2_000, 20_000],
}

NOTES = [
    "P4: Bouncer([], store, clock=Clock(), tokens=TokenPolicy()) holding"
    " keycards issued for presented tokens; memory is the growth of the"
    " process's resident set per keycard; expiry is from the timers firing"
    f" to the requester told of all {EXPIRED}; SQLite: a file store with its"
    " defaults (synchronous=FULL), one committed transaction per issue and"
    " per expiry",
]


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@implementer(IRequester)
class Requester:
    """
    Counts the keycards the bouncer expires; C{done} fires at L{EXPIRED}.
    """

    def __init__(self) -> None:
        self.expired = 0
        self.done: Deferred[None] = Deferred()

    def keycardIds(self) -> list[str]:
        return []

    def expireKeycardIds(self, keycardIds: Sequence[str]) -> None:
        self.expired += len(keycardIds)
        if self.expired >= EXPIRED and not self.done.called:
            self.done.callback(None)


async def hold(store: Any, count: int) -> dict[str, float]:
    """
    Hold C{count} keycards on C{store}; bytes per keycard, and seconds to
    expire L{EXPIRED} of them.
    """
    clock = Clock()
    clock.advance(1_800_000_000)
    bouncer = Bouncer([], store, clock=clock, duration=3600, tokens=TokenPolicy())
    requester = Requester()
    bouncer.registerRequester("r", requester)
    assert bouncer.keys is not None
    keyring = await bouncer.keys.current()
    now = clock.seconds()
    token = sign(
        TokenClaims(newKeycardId(), "alice", now, now + 7200, "bouncer", "r"),
        keyring.signing,
    )

    async def issue() -> None:
        keycard = TokenKeycard(presented=token, requesterName="r", address="192.0.2.1")
        result = await bouncer.authenticate(keycard)
        assert result.state is KeycardState.AUTHENTICATED

    async def issueMany(n: int) -> None:
        for start in range(0, n, IN_FLIGHT):
            batch = min(IN_FLIGHT, n - start)
            await gatherResults([ensureDeferred(issue()) for _ in range(batch)])

    gc.collect()
    before = rss()
    await issueMany(EXPIRED)
    clock.advance(1.0)  # the first EXPIRED expire one second earlier
    await issueMany(count - EXPIRED)
    gc.collect()
    perKeycard = (rss() - before) / count
    clock.advance(3600 - 1.0 - 0.001)
    assert requester.expired == 0
    start = time.perf_counter()
    clock.advance(0.001)  # the bouncer's timers expire the first batch
    await requester.done
    elapsed = time.perf_counter() - start
    assert requester.expired == EXPIRED, requester.expired
    bouncer.stopService()
    return {"perKeycard": perKeycard, "expire": elapsed}


def child(kind: str, count: int) -> None:
    async def main(reactor: Any) -> None:
        with tempfile.TemporaryDirectory(prefix="keycard-bench-") as directory:
            if kind == "memory":
                result = await hold(MemoryStore(), count)
            else:
                path = os.path.join(directory, "keycard.db")
                store = await SQLiteStore.open(path, reactor)
                result = await hold(store, count)
                await store.close()
                result["disk"] = os.path.getsize(path) / count
        print(json.dumps(result), flush=True)

    task.react(lambda reactor: ensureDeferred(main(reactor)))


def measure(kind: str, count: int) -> dict[str, float]:
    result: dict[str, float] = inChild("bench.p4_memory", kind, str(count))
    return result


def label(count: int) -> str:
    return f"{count // 1_000_000}M" if count >= 1_000_000 else f"{count // 1000}k"


def run(quick: bool) -> list[Figure]:
    figures = []
    for kind, name in (("memory", "memory store"), ("sqlite", "SQLite store")):
        small, large = SIZES[kind, quick]
        timings = []
        for count in (small, large):
            result = measure(kind, count)
            timings.append(result["expire"])
            held = f"{label(count)} held"
            figures.append(
                single(
                    "P4",
                    f"{name}: memory per held keycard, {held}",
                    result["perKeycard"],
                    "bytes",
                )
            )
            if "disk" in result:
                figures.append(
                    single(
                        "P4",
                        f"{name}: file bytes per keycard issued, {held}",
                        result["disk"],
                        "bytes",
                    )
                )
            figures.append(
                single(
                    "P4",
                    f"{name}: expire {EXPIRED} keycards, {held}",
                    result["expire"] * 1000,
                    "ms",
                )
            )
        figures.append(
            single(
                "P4",
                f"{name}: expiry cost {label(large)}/{label(small)} held"
                " (O(k): about 1)",
                timings[1] / timings[0],
                "x",
            )
        )
    return figures


if __name__ == "__main__":
    child(sys.argv[2], int(sys.argv[3]))
