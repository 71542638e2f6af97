"""
P4: memory per active keycard, and the cost of expiring keycards, with 100k
and 1M keycards held by one bouncer (memory store).  Absolute figures: no
peer holds keycards.

Keycards are issued through the real path (token keycards, one-shot), and
expired by the bouncer's own timers, on a Clock.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Sequence

from twisted.internet.task import Clock
from zope.interface import implementer

from twisted_keycard import Bouncer, IRequester, KeycardState, MemoryStore
from twisted_keycard.bouncer import TokenPolicy, newKeycardId
from twisted_keycard.tokencard import TokenKeycard
from twisted_keycard.tokens import Keyring, TokenClaims, sign

from ._common import Figure

EXPIRED = 1000


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@implementer(IRequester)
class Requester:
    def __init__(self) -> None:
        self.expired = 0

    def keycardIds(self) -> list[str]:
        return []

    def expireKeycardIds(self, keycardIds: Sequence[str]) -> None:
        self.expired += len(keycardIds)


def fill(count: int) -> tuple[float, float]:
    """
    Hold C{count} keycards; return bytes per keycard, and seconds to expire
    L{EXPIRED} of them.
    """
    clock = Clock()
    clock.advance(1_800_000_000)
    store = MemoryStore()
    bouncer = Bouncer([], store, clock=clock, duration=3600, tokens=TokenPolicy())
    requester = Requester()
    bouncer.registerRequester("r", requester)
    # Not started as a service: its periodic flush of the store (a scan,
    # every five minutes) is upkeep, not expiry, and would land in the
    # timed second.
    keyring = Keyring.generate(clock.seconds())
    store.saveKeyring(keyring)
    assert bouncer.keys is not None
    bouncer.keys.keyring = keyring
    now = clock.seconds()
    token = sign(
        TokenClaims(newKeycardId(), "alice", now, now + 7200, "bouncer", "r"),
        keyring.signing,
    )
    gc.collect()
    before = rss()
    for i in range(count):
        if i == EXPIRED:
            clock.advance(1.0)  # the first EXPIRED expire one second earlier
        keycard = TokenKeycard(presented=token, requesterName="r", address="192.0.2.1")
        result = bouncer.authenticate(keycard).result  # synchronous: memory store
        assert result.state is KeycardState.AUTHENTICATED
    gc.collect()
    perKeycard = (rss() - before) / count
    clock.advance(3600 - 1.0 - 0.001)
    assert requester.expired == 0
    start = time.perf_counter()
    clock.advance(0.001)  # the bouncer's timers expire the first batch
    elapsed = time.perf_counter() - start
    assert requester.expired == EXPIRED, requester.expired
    bouncer.stopService()
    return perKeycard, elapsed


def run(quick: bool) -> list[Figure]:
    sizes = [100_000, 1_000_000] if not quick else [20_000, 200_000]
    figures = []
    timings = []
    for size in sizes:
        perKeycard, elapsed = fill(size)
        timings.append(elapsed)
        label = f"{size // 1000}k"
        figures.append(
            Figure(
                "P4",
                f"memory per active keycard, {label} held",
                perKeycard,
                None,
                "bytes",
                None,
                1,
                perKeycard,
                perKeycard,
            )
        )
        figures.append(
            Figure(
                "P4",
                f"expire {EXPIRED} keycards with {label} held",
                elapsed * 1000,
                None,
                "ms",
                None,
                1,
                elapsed * 1000,
                elapsed * 1000,
            )
        )
    figures.append(
        Figure(
            "P4",
            f"expiry cost ratio {sizes[1] // 1000}k/{sizes[0] // 1000}k held"
            " (O(k): about 1)",
            timings[1] / timings[0],
            None,
            "x",
            None,
            1,
            timings[1] / timings[0],
            timings[1] / timings[0],
        )
    )
    return figures
