"""
The queue of a seat pool on a Redis store shared by three bouncer
processes (one per simulated host): waiters queued in turn on different
bouncers get the seat in the order they queued, each once the one before
leaves, never two at once; a seat freed on one bouncer reaches the head
waiting on another through Redis's push.
"""

from __future__ import annotations

import time

import pytest
from twisted.internet.defer import Deferred, ensureDeferred

from twisted_keycard.scram import SCRAMAnswerer

from ._procs import waitFor
from .test_redis_bouncers import PASSWORD, RedisBouncers
from .test_seat_queue_process import OPTIONS, Waiter

# Real processes: a Redis server and three bouncers.
pytestmark = pytest.mark.integration


class RedisSeatQueueTests(RedisBouncers):
    def test_oneQueueAcrossHosts(self) -> Deferred[None]:
        async def go() -> None:
            addresses = await self.startBouncers(*OPTIONS)
            holder = await self.connect(addresses[0])
            await holder.loginWithKeycard([SCRAMAnswerer("alice", PASSWORD)])
            waiters = []
            for i, (host, port) in enumerate(addresses, 1):
                waiter = Waiter(port, f"u{i}", host, PASSWORD)
                self.addCleanup(waiter.stop)
                waiters.append(waiter)
                await waitFor(lambda w=waiter, i=i: (i, i) in w.places, f"u{i} queued")
            holder.disconnect()
            for i, waiter in enumerate(waiters):
                freed = time.monotonic()
                await waitFor(lambda w=waiter: bool(w.logins), f"u{i + 1} seated")
                took = time.monotonic() - freed
                print(f"u{i + 1} seated {took:.2f} s after the seat was freed")
                for other in waiters:
                    if other is not waiter:
                        self.assertEqual(other.logins, [], other.user)
                await waiter.stop()
                waiter.logins.clear()

        return ensureDeferred(go())
