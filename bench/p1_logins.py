"""
P1: SCRAM keycard logins over PB on loopback, beside Twisted's stock PB
login (C{PBClientFactory.login} with C{UsernamePassword}, in-memory
checker), same layout: server and client in separate processes, 1 client
and 100 logins in flight, a new connection per login and one connection for
many logins.  Rate, server CPU per login (from /proc), client CPU per login,
p50/p99 latency and round trips per login.  Each client process first logs
every user in once, untimed (both sides alike), so that the SCRAM client has
derived each password's keys, as a long-running client has.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ._common import Figure

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
TICK = os.sysconf("SC_CLK_TCK")


def cpuSeconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def startServer(side: str) -> tuple[subprocess.Popen[str], int]:
    server = subprocess.Popen(
        [sys.executable, "-m", "bench._pbpeer", "server", side],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=ROOT,
    )
    assert server.stdout is not None
    return server, int(server.stdout.readline())


def runClients(
    side: str,
    port: int,
    concurrency: int,
    mode: str,
    count: int,
    processes: int = 1,
    warm: bool = False,
) -> list[dict[str, Any]]:
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench._pbpeer",
                "client",
                side,
                str(port),
                str(concurrency),
                mode,
                str(count),
                *(["warm"] if warm else []),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
            cwd=ROOT,
        )
        for _ in range(processes)
    ]
    results = []
    for child in children:
        out, _ = child.communicate(timeout=600)
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def measure(side: str, count: int) -> dict[tuple[str, int], dict[str, float]]:
    server, port = startServer(side)
    figures = {}
    try:
        runClients(side, port, 10, "one", 200)  # warm up
        for mode in ("new", "one"):
            for concurrency in (1, 100):
                before = cpuSeconds(server.pid)
                (result,) = runClients(side, port, concurrency, mode, count, warm=True)
                cpu = cpuSeconds(server.pid) - before
                if result["failures"]:
                    raise RuntimeError(f"{side} {mode} {concurrency}: {result}")
                figures[(mode, concurrency)] = {
                    "rate": result["logins"] / result["seconds"],
                    # The server also served the client's warm-up logins.
                    "cpu": cpu / (result["logins"] + result["warmup"]) * 1e6,
                    "clientCpu": result["cpu"] / result["logins"] * 1e6,
                    "p50": result["p50"] * 1000,
                    "p99": result["p99"] * 1000,
                    "rtt": result["roundTrips"],
                }
    finally:
        server.terminate()
        server.wait()
    return figures


def one(
    id: str, name: str, ours: float, peer: float, unit: str, higher: bool
) -> Figure:
    ratio = (ours / peer if higher else peer / ours) if peer and ours else None
    return Figure(id, name, ours, peer, unit, ratio, 1, ours, ours)


def run(quick: bool) -> list[Figure]:
    count = 400 if quick else 3000
    ours, stock = measure("ours", count), measure("stock", count)
    figures = []
    for (mode, concurrency), o in ours.items():
        s = stock[(mode, concurrency)]
        connections = "new conn/login" if mode == "new" else "one conn"
        layout = f"{connections}, {concurrency} in flight"
        figures += [
            one("P1", f"logins/s ({layout})", o["rate"], s["rate"], "logins/s", True),
            one(
                "P1",
                f"server CPU per login ({layout})",
                o["cpu"],
                s["cpu"],
                "us",
                False,
            ),
            one(
                "P1",
                f"client CPU per login ({layout})",
                o["clientCpu"],
                s["clientCpu"],
                "us",
                False,
            ),
            one("P1", f"p50 latency ({layout})", o["p50"], s["p50"], "ms", False),
            one("P1", f"p99 latency ({layout})", o["p99"], s["p99"], "ms", False),
        ]
    o, s = ours[("one", 1)], stock[("one", 1)]
    figures.append(
        one("P1", "round trips per login", o["rtt"], s["rtt"], "requests", False)
    )
    return figures
