"""
Tests for a Redis store behind Sentinel (C{redis+sentinel://}): a primary,
a replica and a Sentinel, each a real C{redis-server}.  Revocations are
acknowledged once the replica has them (C{replicas=1}); when the primary
dies, the Sentinel promotes the replica, the store follows it there, and
no acknowledged revocation is lost.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from twisted_keycard.store import Revocation
from twisted_keycard.store.redis import (
    KeyEncryptionKey,
    RedisStore,
    ReplicasBehind,
    StoreUnavailable,
    parseRedisURL,
)
from twisted_keycard.store.redis._blocking import startupCheck

from ._procs import waitFor
from ._redis import RedisServer, reactor

pytestmark = pytest.mark.integration


class SentinelTests(TestCase):
    def setUp(self) -> None:
        root = Path(self.mktemp()).resolve()
        self.primary = RedisServer(root / "primary", "--appendonly", "yes")
        self.primary.start()
        self.addCleanup(self.primary.stop)
        self.replica = RedisServer(
            root / "replica",
            "--appendonly",
            "yes",
            "--replicaof",
            self.primary.host,
            str(self.primary.port),
        )
        self.replica.start()
        self.addCleanup(self.replica.stop)
        self.sentinel = RedisServer(
            root / "sentinel", monitor=(self.primary.host, self.primary.port)
        )
        self.sentinel.start()
        self.addCleanup(self.sentinel.stop)
        self.url = (
            f"redis+sentinel://{self.sentinel.host}:{self.sentinel.port}/main/0"
            "?replicas=1&replica-timeout=2"
        )

    def test_failover(self) -> Deferred[None]:
        async def go() -> None:
            await waitFor(
                lambda: (
                    "master_link_status:up" in self.replica.cli("INFO", "replication")
                ),
                "the replica to be in sync",
            )
            kek = KeyEncryptionKey.generate()
            secret = startupCheck(parseRedisURL(self.url), None, kek).mockSecret
            store: RedisStore = await RedisStore.open(
                self.url, reactor, keyEncryptionKey=kek
            )
            self.addCleanup(store.close)
            self.assertEqual(await store.mockSecret(), secret)
            now = reactor.seconds()
            ids = [f"k{i}" for i in range(20)]
            for keycardId in ids:
                await store.revoke([Revocation(keycardId, now + 600, now)])
            self.primary.kill()
            deadline = time.monotonic() + 60
            while True:
                try:
                    await store.revoke([Revocation("after", now + 600, now)])
                    break
                except ReplicasBehind:
                    # Written on the new primary, which has no replica left.
                    break
                except StoreUnavailable:
                    pass
                self.assertLess(time.monotonic(), deadline, "no failover")
                await deferLater(reactor, 0.1, lambda: None)
            self.assertEqual(self.replica.cli("ROLE").split()[0], "master")
            for keycardId in [*ids, "after"]:
                self.assertTrue(await store.isRevoked(keycardId), keycardId)

        return ensureDeferred(go())
