"""
Integration tests of C{twistd -n keycard-bouncer --metrics ENDPOINT}: the
bouncer as a real process, logged in to over real PB connections and by the
C{keycard} command, its metrics scraped over real HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import treq
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from twisted_keycard import KeycardClientFactory
from twisted_keycard.scram import SCRAMAnswerer

from ._procs import TIMEOUT, keycard, metricsBouncer, reactor

PASSWORD = "correct horse battery staple"
KIND = "scram-sha-256"

pytestmark = pytest.mark.integration


class Scrape:
    """
    The samples of one scrape, by name and labels.
    """

    def __init__(self, text: str) -> None:
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                self.samples[key] = sample.value

    def __call__(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))


class MetricsServiceTests(TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        self.data = self.dir / "data"
        self.assertEqual(keycard("init", str(self.data)).returncode, 0)
        added = keycard(
            "user", "add", "--data-dir", str(self.data), "alice", stdin=PASSWORD
        )
        self.assertEqual(added.returncode, 0, added.stderr)

    async def scrape(self, port: int) -> Scrape:
        response = await treq.get(f"http://127.0.0.1:{port}/metrics", persistent=False)
        self.assertEqual(response.code, 200)
        contentType = response.headers.getRawHeaders(b"content-type", [b""])[0]
        self.assertTrue(contentType.startswith(b"text/plain"), contentType)
        return Scrape(await response.text("utf-8"))

    async def scrapeUntil(
        self, port: int, condition: Callable[[Scrape], bool], what: str
    ) -> Scrape:
        """
        Scrape until C{condition} holds of a scrape, for some seconds.
        """
        deadline = time.monotonic() + TIMEOUT
        while True:
            scrape = await self.scrape(port)
            if condition(scrape):
                return scrape
            self.assertLess(time.monotonic(), deadline, f"timed out waiting for {what}")
            await deferLater(reactor, 0.1, lambda: None)

    async def connect(self, port: int) -> KeycardClientFactory:
        factory = KeycardClientFactory()
        broker: Any = await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(
            factory
        )
        self.addCleanup(broker.transport.loseConnection)
        return factory

    def test_scrape(self) -> Deferred[None]:
        """
        After real logins, the scraped counters and gauges say what
        happened: one success, one wrong password, one keycard held, the
        store's calls timed; a revocation by the C{keycard} command is read
        and drops the client.
        """

        async def go() -> None:
            _, port, metricsPort = await metricsBouncer(
                self,
                self.data,
                self.dir / "bouncer.log",
            )
            before = await self.scrape(metricsPort)
            self.assertEqual(
                before("keycard_logins_total", kind=KIND, result="success"), 0
            )
            self.assertEqual(before("keycard_held"), 0)

            login = await (await self.connect(port)).loginWithKeycard(
                [SCRAMAnswerer("alice", PASSWORD)]
            )
            wrong = keycard(
                "login", "--connect", f"tcp:127.0.0.1:{port}", "alice", stdin="nope\n"
            )
            self.assertEqual(wrong.returncode, 1, wrong.stderr)
            after = await self.scrape(metricsPort)
            self.assertEqual(
                after("keycard_logins_total", kind=KIND, result="success"), 1
            )
            self.assertEqual(
                after("keycard_logins_total", kind=KIND, result="refused"), 1
            )
            self.assertEqual(after("keycard_refusals_total", reason="credentials"), 1)
            self.assertEqual(after("keycard_held"), 1)
            self.assertEqual(after("keycard_exchanges_pending"), 0)
            self.assertEqual(after("keycard_throttled_total"), 0)
            self.assertEqual(after("keycard_store_seconds_count", method="add"), 1)
            lag = after("keycard_follow_lag_seconds")
            assert lag is not None
            self.assertTrue(0 <= lag < 30, lag)
            self.assertIsNotNone(after("process_resident_memory_bytes"))

            assert login.keycard.id is not None
            revoked = keycard(
                # An id may start with "-".
                "revoke",
                "--data-dir",
                str(self.data),
                "--",
                login.keycard.id,
            )
            self.assertEqual(revoked.returncode, 0, revoked.stderr)
            last = await self.scrapeUntil(
                metricsPort,
                lambda scrape: scrape("keycard_revoked_held_total") == 1,
                "the revocation to drop the client",
            )
            self.assertEqual(last("keycard_held"), 0)
            # The keycard's id and its family's mark.
            self.assertEqual(last("keycard_revocations_seen_total"), 2)
            self.assertEqual(last("keycard_revocation_delay_seconds_count"), 2)

        return ensureDeferred(go())
