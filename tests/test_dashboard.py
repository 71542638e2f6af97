"""
The Grafana dashboard's queries on a real Prometheus (Debian's
C{prometheus}) scraping a real C{twistd -n keycard-bouncer --metrics}
with logins going on: every query of every panel is valid PromQL and
gives data.

With C{KEYCARD_SCREENSHOTS=DIR} set, the logins go on for a few minutes
and C{contrib/grafana/preview.py} draws the dashboard from that
Prometheus into C{DIR/dashboard.png} (needs matplotlib); docs/production.rst
shows the one made with C{KEYCARD_SCREENSHOTS=docs/_static}.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import treq
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from twisted_keycard import KeycardClientFactory, KeycardDenied, KeycardRefused
from twisted_keycard.scram import SCRAMAnswerer

from ._procs import (
    ROOT,
    Process,
    freePort,
    keycard,
    metricsBouncer,
    needTool,
    reactor,
    waitFor,
)

PASSWORD = "correct horse battery staple"
USERS = ("alice", "bob", "carol", "dave")

pytestmark = pytest.mark.integration

_SHOTS = os.environ.get("KEYCARD_SCREENSHOTS")


def preview() -> ModuleType:
    """
    C{contrib/grafana/preview.py}, which is not a package.
    """
    path = ROOT / "contrib" / "grafana" / "preview.py"
    spec = importlib.util.spec_from_file_location("keycard_dashboard_preview", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class DashboardTests(TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        self.data = self.dir / "data"
        self.assertEqual(keycard("init", str(self.data)).returncode, 0)
        for name in USERS:
            added = keycard(
                "user", "add", "--data-dir", str(self.data), name, stdin=PASSWORD
            )
            self.assertEqual(added.returncode, 0, added.stderr)

    def prometheus(self, metricsPort: int) -> str:
        """
        Start Prometheus, scraping the bouncer's metrics every second.

        @return: its base URL.
        """
        binary = needTool("prometheus")
        port = freePort()
        config = self.dir / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: keycard-bouncer\n"
            "    static_configs:\n"
            f"      - targets: ['127.0.0.1:{metricsPort}']\n"
        )
        process = Process(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.dir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            self.dir / "prometheus.log",
        )
        process.start()
        self.addCleanup(process.stop)
        self.prometheusProcess = process
        return f"http://127.0.0.1:{port}"

    async def query(self, base: str, expr: str) -> list[dict[str, Any]]:
        response = await treq.get(
            base + "/api/v1/query", params={"query": expr}, persistent=False
        )
        answer = json.loads(await response.text("utf-8"))
        self.assertEqual(answer["status"], "success", (expr, answer))
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    async def logins(self, port: int, seconds: float) -> None:
        """
        Log in for about C{seconds}, each login on a connection of its own
        held a moment, from a few addresses: mostly right passwords, one
        in twenty-five wrong.
        """
        end = time.monotonic() + seconds
        done = 0
        while done < 20 or time.monotonic() < end:
            factory = KeycardClientFactory()
            source = (f"127.0.0.{random.randint(2, 5)}", 0)
            broker: Any = await TCP4ClientEndpoint(
                reactor, "127.0.0.1", port, bindAddress=source
            ).connect(factory)
            right = done % 25 != 7
            answerer = SCRAMAnswerer(
                random.choice(USERS), PASSWORD if right else "wrong"
            )
            try:
                await factory.loginWithKeycard([answerer])
            except KeycardRefused:
                self.assertFalse(right)
            except KeycardDenied:
                # Throttled, after the wrong passwords: a refusal too.
                pass
            else:
                self.assertTrue(right)
                await deferLater(reactor, random.uniform(0.05, 0.5), lambda: None)
            broker.transport.loseConnection()
            done += 1
            await deferLater(reactor, random.uniform(0.02, 0.2), lambda: None)

    def test_panelsGiveData(self) -> Deferred[None]:
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
                "50",
            )
            base = self.prometheus(metricsPort)
            await waitFor(
                lambda: "Server is ready" in self.prometheusProcess.output(),
                "Prometheus",
            )
            await self.logins(port, 170.0 if _SHOTS else 4.0)
            # Enough scrapes for a rate over 10 s.
            seen: list[int] = []

            async def scraped() -> None:
                while True:
                    counted = await self.query(
                        base, 'count_over_time(up{job="keycard-bouncer"}[1m])'
                    )
                    seen[:] = [int(float(counted[0]["value"][1]))] if counted else []
                    if seen and seen[0] >= 10:
                        return
                    await deferLater(reactor, 0.5, lambda: None)

            await scraped()
            module = preview()
            dashboard = json.loads(module.DASHBOARD.read_text())
            empty = []
            for panel in dashboard["panels"]:
                for _, expr in module.expressions(panel, module.JOB, "10s"):
                    if not await self.query(base, expr):
                        empty.append((panel["title"], expr))
            self.assertEqual(empty, [])
            if _SHOTS:
                # Relative to the checkout, as the docs name it.
                out = ROOT / _SHOTS / "dashboard.png"
                drawn = subprocess.run(
                    [
                        sys.executable,
                        str(ROOT / "contrib" / "grafana" / "preview.py"),
                        "--prometheus",
                        base,
                        "--minutes",
                        "3",
                        "--out",
                        str(out),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                self.assertEqual(drawn.returncode, 0, drawn.stderr)

        return ensureDeferred(go())

    # Minutes of logins for a picture.
    test_panelsGiveData.timeout = 600 if _SHOTS else 120  # type: ignore[attr-defined]
