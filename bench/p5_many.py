"""
P5: 1,000 clients logging in at once, a new connection each, from four
client processes of 250 that start together (after each has logged every
user in once, untimed), against one server: the embedded configuration and
the service (see L{bench.p1_logins}), beside Twisted's stock PB login.
Percentiles are over all 1,000 logins, every process's latencies pooled.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ._common import Figure, figure, percentile
from ._pbpeer import PER_ADDRESS, addressesFor
from ._servers import Config, Server, makeDataDir, runClients

CLIENTS = 1000
PROCESSES = 4

#: 1,000 connections not logged in at once: above the default (512 in
#: all), so raised.  Per address the defaults hold: the clients come from
#: 100 loopback addresses (see L{bench._pbpeer.sourceAddress}).
RAISED = {"connection": {"maxUnauthenticated": 1024}}

CONFIGS = {
    "stock": Config("stock"),
    "embedded": Config("embedded", RAISED),
    "service": Config("service", RAISED),
}

NOTES = [
    f"P5 configurations: as P1's, with {CONFIGS['embedded'].limitsNote()}"
    f" (1,000 at once); the clients from {CLIENTS // PER_ADDRESS} loopback"
    f" addresses, {PER_ADDRESS} each; latencies pooled over all"
    f" {CLIENTS} logins of the {PROCESSES} client processes; goal: 0 failures",
]


def burst(config: Config, template: Path) -> dict[str, float]:
    server = Server(config, template)
    try:
        per = CLIENTS // PROCESSES
        side = "stock" if config.side == "stock" else "ours"
        results, serverNs = runClients(side, server, per, "new", per, PROCESSES)
    finally:
        server.stop()
    latencies = [v for r in results for v in r["latencies"]]
    return {
        "failures": sum(r["failures"] for r in results),
        "p50": percentile(latencies, 0.50),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies, default=0.0),
        "seconds": max(r["seconds"] for r in results),
        "cpu": serverNs / max(1, len(latencies)) / 1000,
    }


def run(quick: bool) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="keycard-bench-") as tmp:
        template = Path(tmp) / "data"
        makeDataDir(template)
        measured = {name: burst(c, template) for name, c in CONFIGS.items()}
    stock = measured["stock"]
    figures = []
    for name in ("embedded", "service"):
        ours = measured[name]
        for key, what, unit in (
            ("failures", "failed logins", "logins"),
            ("p50", "p50 latency, all logins", "ms"),
            ("p99", "p99 latency, all logins", "ms"),
            ("max", "slowest login", "ms"),
            ("seconds", "wall time", "s"),
            ("cpu", "server CPU/login", "us"),
        ):
            f = figure(
                "P5",
                f"{CONFIGS[name].tag}: {CLIENTS} at once from"
                f" {addressesFor(CLIENTS)} addresses: {what}",
                [ours[key]],
                [stock[key]],
                unit,
                higherIsBetter=False,
            )
            if key == "failures":
                f = f.held("0 failures", ours[key] == 0)
            figures.append(f)
    return figures
