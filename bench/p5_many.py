"""
P5: 1,000 clients logging in at once (a new connection each), from four
client processes of 250 against one bouncer process.  Absolute figures.
"""

from __future__ import annotations

from ._common import Figure
from .p1_logins import cpuSeconds, runClients, startServer

CLIENTS = 1000
PROCESSES = 4


def run(quick: bool) -> list[Figure]:
    server, port = startServer("ours")
    try:
        runClients("ours", port, 10, "one", 100)  # warm up
        before = cpuSeconds(server.pid)
        per = CLIENTS // PROCESSES
        results = runClients("ours", port, per, "new", per, PROCESSES)
        cpu = cpuSeconds(server.pid) - before
    finally:
        server.terminate()
        server.wait()
    failures = sum(r["failures"] for r in results)
    p50 = max(r["p50"] for r in results) * 1000
    p99 = max(r["p99"] for r in results) * 1000
    seconds = max(r["seconds"] for r in results)
    return [
        Figure(
            "P5",
            f"{CLIENTS} concurrent clients: failures",
            failures,
            None,
            "logins",
            None,
            1,
            failures,
            failures,
        ),
        Figure(
            "P5",
            f"{CLIENTS} concurrent clients: p50 (worst process)",
            p50,
            None,
            "ms",
            None,
            1,
            p50,
            p50,
        ),
        Figure(
            "P5",
            f"{CLIENTS} concurrent clients: p99 (worst process)",
            p99,
            None,
            "ms",
            None,
            1,
            p99,
            p99,
        ),
        Figure(
            "P5",
            f"{CLIENTS} concurrent clients: wall time",
            seconds,
            None,
            "s",
            None,
            1,
            seconds,
            seconds,
        ),
        Figure(
            "P5",
            f"{CLIENTS} concurrent clients: server CPU per login",
            cpu / CLIENTS * 1000,
            None,
            "ms",
            None,
            1,
            cpu,
            cpu,
        ),
    ]
