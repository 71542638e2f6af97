"""
P1: SCRAM keycard logins over PB on loopback, beside Twisted's stock PB
login (C{PBClientFactory.login} with C{UsernamePassword}, in-memory
checker), same layout: server and client in separate processes, 1 client
and 100 logins in flight, a new connection per login and one connection for
many logins.  Rate, server CPU per login (from /proc), client CPU per login,
p50/p99 latency and round trips per login: the medians of three runs, each
of both sides.  Each client process first logs every user in once, untimed
(both sides alike), so that the SCRAM client has derived each password's
keys, as a long-running client has.
"""

from __future__ import annotations

import json
import os
import statistics
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
    id: str, name: str, ours: list[float], peer: list[float], unit: str, higher: bool
) -> Figure:
    """
    Medians of the runs (each run measures both sides); min and max of ours.
    """
    o, p = statistics.median(ours), statistics.median(peer)
    ratio = (o / p if higher else p / o) if p and o else None
    return Figure(id, name, o, p, unit, ratio, len(ours), min(ours), max(ours))


#: Runs of each layout, alternating ours and the peer's.
RUNS = 3


def run(quick: bool) -> list[Figure]:
    count = 400 if quick else 2000
    ours: list[dict[tuple[str, int], dict[str, float]]] = []
    stock: list[dict[tuple[str, int], dict[str, float]]] = []
    for _ in range(RUNS):
        ours.append(measure("ours", count))
        stock.append(measure("stock", count))

    def each(
        runs: list[dict[tuple[str, int], dict[str, float]]],
        layout: tuple[str, int],
        key: str,
    ) -> list[float]:
        return [r[layout][key] for r in runs]

    figures = []
    for mode, concurrency in ours[0]:
        connections = "new conn/login" if mode == "new" else "one conn"
        name = f"{connections}, {concurrency} in flight"
        at = (mode, concurrency)
        for key, what, unit, higher in (
            ("rate", "logins/s", "logins/s", True),
            ("cpu", "server CPU per login", "us", False),
            ("clientCpu", "client CPU per login", "us", False),
            ("p50", "p50 latency", "ms", False),
            ("p99", "p99 latency", "ms", False),
        ):
            figures.append(
                one(
                    "P1",
                    f"{what} ({name})",
                    each(ours, at, key),
                    each(stock, at, key),
                    unit,
                    higher,
                )
            )
    at = ("one", 1)
    figures.append(
        one(
            "P1",
            "round trips per login",
            each(ours, at, "rtt"),
            each(stock, at, "rtt"),
            "requests",
            False,
        )
    )
    return figures
