"""
The monitoring files shipped in C{contrib/}: the Prometheus alert rules
(checked, and their own unit tests run, by C{promtool}), the Grafana
dashboard, and a real scrape of C{twistd -n keycard-bouncer --metrics} that
C{promtool check metrics} passes and that holds every metric the rules and
the dashboard name.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import treq
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_keycard import KeycardClientFactory, __version__
from twisted_keycard.scram import SCRAMAnswerer

from ._procs import (
    ROOT,
    TIMEOUT,
    keycard,
    metricsBouncer,
    needTool,
    reactor,
    requesterProcess,
    waitFor,
)
from ._redis import RedisServer
from .test_service_metrics import Scrape

RULES = ROOT / "contrib" / "prometheus" / "keycard-rules.yml"
RULE_TESTS = ROOT / "contrib" / "prometheus" / "keycard-rules.test.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "keycard.json"

PASSWORD = "correct horse battery staple"
SECRET = "requester secret"

#: A metric of this package, as a rule or a panel names it.
METRIC = re.compile(r"\bkeycard_[a-z_]+\b")


def promtool(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [needTool("promtool"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=RULES.parent,
    )


def ruleExpressions() -> list[str]:
    """
    The expressions of the alert rules, read with a YAML-free scan: each
    C{expr:} line, and the indented lines of a folded one.
    """
    expressions: list[str] = []
    lines = RULES.read_text().splitlines()
    for n, line in enumerate(lines):
        found = re.match(r"(\s*)expr:\s*(.*)$", line)
        if found is None:
            continue
        indent, first = len(found[1]), found[2]
        if first not in (">-", ">", "|", "|-"):
            expressions.append(first)
            continue
        body = []
        for following in lines[n + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following.strip())
        expressions.append(" ".join(body))
    return expressions


def dashboardExpressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def named(expressions: list[str]) -> set[str]:
    """
    The metrics of this package that the expressions name.
    """
    return {m for e in expressions for m in METRIC.findall(e)}


class RuleTests(SynchronousTestCase):
    """
    The alert rules are valid, and each fires on what should raise it.
    """

    def test_checkRules(self) -> None:
        checked = promtool("check", "rules", str(RULES))
        self.assertEqual(checked.returncode, 0, checked.stdout + checked.stderr)
        self.assertIn("SUCCESS: 6 rules found", checked.stdout)

    def test_ruleUnitTests(self) -> None:
        """
        C{promtool test rules}: each alert fires on its input series once
        its C{for} has passed, and not before.
        """
        tested = promtool("test", "rules", str(RULE_TESTS))
        self.assertEqual(tested.returncode, 0, tested.stdout + tested.stderr)
        self.assertIn("SUCCESS", tested.stdout)

    def test_alerts(self) -> None:
        """
        The alerts the operator's runbook names are all there.
        """
        alerts = re.findall(r"^\s*- alert: (\w+)", RULES.read_text(), re.M)
        self.assertEqual(
            sorted(alerts),
            [
                "KeycardBouncerDown",
                "KeycardLoginFailureRatioHigh",
                "KeycardSeatPoolFull",
                "KeycardSigningKeyOld",
                "KeycardStoreDown",
                "KeycardStoreWritesQueued",
            ],
        )
        self.assertEqual(len(ruleExpressions()), len(alerts))


class DashboardTests(SynchronousTestCase):
    def test_panels(self) -> None:
        """
        The dashboard is Grafana JSON: panels with unique ids, each with at
        least one query on the chosen data source, laid out on the 24-column
        grid without overlapping.
        """
        dashboard = json.loads(DASHBOARD.read_text())
        self.assertEqual(dashboard["uid"], "keycard-bouncers")
        panels = dashboard["panels"]
        ids = [p["id"] for p in panels]
        self.assertEqual(len(ids), len(set(ids)))
        cells: set[tuple[int, int]] = set()
        for panel in panels:
            self.assertTrue(panel["targets"], panel["title"])
            for target in panel["targets"]:
                self.assertEqual(target["datasource"]["uid"], "${datasource}")
                self.assertIn('job="$job"', target["expr"])
            grid = panel["gridPos"]
            self.assertLessEqual(grid["x"] + grid["w"], 24, panel["title"])
            mine = {
                (x, y)
                for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])
            }
            self.assertFalse(cells & mine, panel["title"])
            cells |= mine

    def test_whatOperatorsAsked(self) -> None:
        """
        Panels for logins by outcome, latency (of the bouncer's answers and
        of its store), store up, writes queued,
        seats, requesters and the signing key's age.
        """
        shown = named(dashboardExpressions())
        for metric in [
            "keycard_logins_total",
            "keycard_answer_seconds_bucket",
            "keycard_store_seconds_bucket",
            "keycard_store_up",
            "keycard_store_writes_queued",
            "keycard_seat_pool_held",
            "keycard_seat_pool_size",
            "keycard_requester_connected",
            "keycard_signing_key_age_seconds",
            "keycard_signing_key_info",
        ]:
            self.assertIn(metric, shown)


class ScrapeTests(TestCase):
    """
    A real bouncer with a seat pool, a remote requester process and a
    client logged in through it, scraped over real HTTP.
    """

    pytestmark = pytest.mark.integration

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        self.data = self.dir / "data"
        self.assertEqual(keycard("init", str(self.data)).returncode, 0)
        for name, secret in [("chat", SECRET), ("alice", PASSWORD)]:
            added = keycard(
                "user", "add", "--data-dir", str(self.data), name, stdin=secret
            )
            self.assertEqual(added.returncode, 0, added.stderr)

    async def scrapeText(self, port: int) -> str:
        response = await treq.get(f"http://127.0.0.1:{port}/metrics", persistent=False)
        self.assertEqual(response.code, 200)
        text: str = await response.text("utf-8")
        return text

    async def scrapeUntil(
        self, port: int, condition: Callable[[Scrape], bool], what: str
    ) -> Scrape:
        """
        Scrape until C{condition} holds of a scrape, for some seconds.
        """
        deadline = time.monotonic() + TIMEOUT
        while True:
            scrape = Scrape(await self.scrapeText(port))
            if condition(scrape):
                return scrape
            self.assertLess(time.monotonic(), deadline, f"timed out waiting for {what}")
            await deferLater(reactor, 0.1, lambda: None)

    def requester(self, bouncerPort: int) -> tuple[subprocess.Popen[str], int, Path]:
        """
        Start the requester process C{chat} (see C{tests/_requesterproc.py}).
        """
        log = self.dir / "requester.log"
        process, port = requesterProcess(self, bouncerPort, log, SECRET)
        return process, port, log

    def test_scrape(self) -> Deferred[None]:
        """
        The new gauges in a real scrape: the store up, nothing queued, the
        seat pool, the configured requester before and while it is
        connected and once it is gone, the signing key's id and age through
        a rotation by the C{keycard} command, the build; C{promtool check
        metrics} passes the scrape, and it holds every metric the rules and
        the dashboard name.
        """

        async def go() -> None:
            _, port, metricsPort = await metricsBouncer(
                self,
                self.data,
                self.dir / "bouncer.log",
                "--requesters",
                "chat",
                "--seat-pool",
                "floor",
                "--seats",
                "5",
            )
            first = await self.scrapeUntil(
                metricsPort,
                lambda s: s("keycard_lease_active") == 1,
                "the bouncer to take its lease",
            )
            self.assertEqual(first("keycard_store_up"), 1)
            # A lease renewal or a throttle share may be committing.
            queued = first("keycard_store_writes_queued")
            assert queued is not None
            self.assertTrue(0 <= queued < 10, queued)
            self.assertEqual(first("keycard_seat_pool_size", pool="floor"), 5)
            self.assertEqual(first("keycard_seat_pool_held", pool="floor"), 0)
            self.assertEqual(first("keycard_requester_connected", requester="chat"), 0)
            [kid] = [
                dict(labels)["kid"]
                for name, labels in first.samples
                if name == "keycard_signing_key_info"
            ]
            age = first("keycard_signing_key_age_seconds")
            assert age is not None
            self.assertTrue(0 <= age < 60, age)
            self.assertEqual(first("keycard_throttle_records"), 0)
            [build] = [
                dict(labels)
                for name, labels in first.samples
                if name == "keycard_build_info"
            ]
            self.assertEqual(build["version"], __version__)

            requester, requesterPort, log = self.requester(port)
            await waitFor(
                lambda: "connected to the bouncer" in log.read_text(), "the requester"
            )
            factory = KeycardClientFactory()
            broker: Any = await TCP4ClientEndpoint(
                reactor, "127.0.0.1", requesterPort
            ).connect(factory)
            self.addCleanup(broker.transport.loseConnection)
            login = await factory.loginWithKeycard([SCRAMAnswerer("alice", PASSWORD)])
            self.assertEqual(login.keycard.requesterName, "chat")
            held = await self.scrapeUntil(
                metricsPort,
                lambda s: (
                    s("keycard_requester_connected", requester="chat") == 1
                    and s("keycard_seat_pool_held", pool="floor") == 2
                ),
                "the requester and its client",
            )
            # Seats of the requester's own login and of alice's.
            self.assertEqual(held("keycard_lease_keycards"), 2)
            # Two SCRAM messages each, each answer timed.
            self.assertEqual(
                held("keycard_answer_seconds_count", kind="scram-sha-256"), 4
            )

            rotated = keycard("keys", "rotate", "--data-dir", str(self.data))
            self.assertEqual(rotated.returncode, 0, rotated.stderr)
            [fresh] = re.findall(r"new signing key (\S+);", rotated.stdout)
            self.assertNotEqual(fresh, kid)
            after = await self.scrapeUntil(
                metricsPort,
                lambda s: s("keycard_signing_key_info", kid=fresh) == 1,
                "the bouncer to follow the rotation",
            )
            self.assertIsNone(after("keycard_signing_key_info", kid=kid))

            text = await self.scrapeText(metricsPort)
            checked = promtool("check", "metrics", stdin=text)
            self.assertEqual(checked.returncode, 0, checked.stdout + checked.stderr)
            self.assertEqual(checked.stdout + checked.stderr, "")
            scraped = {name for name, _ in Scrape(text).samples}
            wanted = named(ruleExpressions()) | named(dashboardExpressions())
            self.assertEqual(wanted - scraped, set())

            requester.kill()
            await self.scrapeUntil(
                metricsPort,
                lambda s: s("keycard_requester_connected", requester="chat") == 0,
                "the bouncer to see the requester gone",
            )

        return ensureDeferred(go())


class RedisOutageScrapeTests(ScrapeTests):
    """
    The store gauges of a real bouncer on a real C{redis-server}, killed
    and started again.
    """

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        # With its AOF, Redis comes back with the bouncer's lease.
        self.redis = RedisServer(
            self.dir / "redis", "--appendonly", "yes", "--appendfsync", "always"
        )
        self.redis.start()
        self.addCleanup(self.redis.stop)
        self.data = self.dir / "data"
        made = keycard("init", str(self.data), "--store", self.redis.url)
        self.assertEqual(made.returncode, 0, made.stderr)
        added = keycard(
            "user", "add", "--data-dir", str(self.data), "alice", stdin=PASSWORD
        )
        self.assertEqual(added.returncode, 0, added.stderr)

    def test_scrape(self) -> Deferred[None]:
        """
        While Redis is down, C{keycard_store_up} is 0 and a password login
        (its keycard's record queued) shows in
        C{keycard_store_writes_queued}; once Redis is back, 1 and 0.
        """

        async def go() -> None:
            _, port, metricsPort = await metricsBouncer(
                self,
                self.data,
                self.dir / "bouncer.log",
                # The test's Redis has no password.
                "--insecure-redis",
            )
            # Started: the keyring and the revocations read, then the lease
            # taken (the store being up is not enough: on a loaded machine
            # Redis went before the bouncer had read its keyring).
            up = await self.scrapeUntil(
                metricsPort,
                lambda s: s("keycard_store_up") == 1 and s("keycard_lease_active") == 1,
                "the store, and the bouncer started",
            )
            self.assertEqual(up("keycard_store_writes_queued"), 0)
            self.redis.kill()
            down = await self.scrapeUntil(
                metricsPort, lambda s: s("keycard_store_up") == 0, "the outage"
            )
            self.assertEqual(down("keycard_store_writes_queued"), 0)
            factory = KeycardClientFactory()
            broker: Any = await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(
                factory
            )
            self.addCleanup(broker.transport.loseConnection)
            await factory.loginWithKeycard([SCRAMAnswerer("alice", PASSWORD)])
            queued = await self.scrapeText(metricsPort)
            self.assertEqual(Scrape(queued)("keycard_store_writes_queued"), 1)
            self.redis.start()
            back = await self.scrapeUntil(
                metricsPort,
                lambda s: (
                    s("keycard_store_up") == 1 and s("keycard_store_writes_queued") == 0
                ),
                "the store back and the queue written",
            )
            # The client stays: its keycard's record reached Redis.
            self.assertEqual(back("keycard_held"), 1)

        return ensureDeferred(go())


class SQLiteLockedScrapeTests(ScrapeTests):
    def test_scrape(self) -> Deferred[None]:
        """
        While another process holds the SQLite file's write lock past the
        busy timeout, the bouncer's writes fail and C{keycard_store_up} is
        0; once the lock is released, its next write commits and it is 1.
        """

        async def go() -> None:
            _, _, metricsPort = await metricsBouncer(
                self,
                self.data,
                self.dir / "bouncer.log",
            )
            await self.scrapeUntil(
                metricsPort, lambda s: s("keycard_lease_active") == 1, "the lease"
            )
            other = sqlite3.connect(self.data / "keycard.db", isolation_level=None)
            self.addCleanup(other.close)
            other.execute("BEGIN IMMEDIATE")
            # The bouncer waits 10 s for the lock (its busy timeout).
            await self.scrapeUntil(
                metricsPort,
                lambda s: s("keycard_store_up") == 0,
                "a write to fail",
            )
            other.execute("ROLLBACK")
            await self.scrapeUntil(
                metricsPort, lambda s: s("keycard_store_up") == 1, "a write to commit"
            )

        return ensureDeferred(go())
