"""
P3: revocation checks per second with 1M revoked ids, through the stores'
public C{isRevoked}: the SQLite store one check at a time (each awaited
before the next, as one token login does) and batched (10,000 checks in
flight at once, which the store answers with a few C{IN (...)} queries),
and the memory store one at a time; beside the raw sqlite3 point look-up
on the same file, in the calling thread.  Half the checks hit a revoked
id.  The revocations are recorded through C{revoke}, as the bouncer and
the C{keycard} command record them.

Every measure runs in one child process with a running reactor, in turn,
each round starting one further along.

    python -m bench.p3_revocations child quick|full    # prints one JSON line
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import task
from twisted.internet.defer import ensureDeferred, gatherResults

from twisted_keycard.bouncer import newKeycardId
from twisted_keycard.store import MemoryStore, Revocation
from twisted_keycard.store.sqlite import SQLiteStore

from ._common import Figure, asyncRate, figure, interleaved, rate

ROOT = Path(__file__).resolve().parent.parent
PROBES = 10_000
FILL = 100_000

NOTES = [
    "P3: isRevoked on SQLiteStore (a file in a temporary directory, the"
    " store's defaults: WAL, synchronous=FULL, its own database thread) and"
    " MemoryStore; 'one at a time' awaits each check before the next,"
    f" 'batched' has {PROBES:,} in flight; peer: sqlite3 SELECT by primary"
    " key on the same file in the calling thread; goal: SQLite one at a time"
    " >= 50,000 checks/s",
]


async def measureAll(
    reactor: Any, quick: bool, directory: str
) -> tuple[int, dict[str, list[float]]]:
    count = 100_000 if quick else 1_000_000
    seconds, runs = (0.5, 3) if quick else (2.0, 5)
    revoked = [newKeycardId() for _ in range(count)]
    probes = [revoked[i * 7 % count] for i in range(PROBES // 2)]
    probes += [newKeycardId() for _ in range(PROBES // 2)]
    random.Random(0).shuffle(probes)
    memory = MemoryStore()
    path = os.path.join(directory, "keycard.db")
    sqlite = await SQLiteStore.open(path, reactor)
    for start in range(0, count, FILL):
        chunk = [Revocation(k, 4e9, 1.0) for k in revoked[start : start + FILL]]
        await memory.revoke(chunk)
        await sqlite.revoke(chunk)
    del revoked
    raw = sqlite3.connect(path)
    cursor = [0]

    def nextProbe() -> str:
        i = cursor[0] = (cursor[0] + 1) % PROBES
        return probes[i]

    def oneAtATime(store: Any) -> Any:
        async def check() -> None:
            await store.isRevoked(nextProbe())

        async def measure() -> float:
            return await asyncRate(check, seconds)

        return measure

    async def batch() -> None:
        answers = await gatherResults([sqlite.isRevoked(k) for k in probes])
        if sum(answers) != PROBES // 2:
            raise AssertionError(f"{sum(answers)} revoked of {PROBES}")

    async def batched() -> float:
        return await asyncRate(batch, seconds) * PROBES

    def rawCheck() -> None:
        raw.execute(
            "SELECT 1 FROM revocations WHERE keycard_id = ?", (nextProbe(),)
        ).fetchone()

    async def rawMeasure() -> float:
        return rate(rawCheck, seconds)

    results = await interleaved(
        {
            "sqliteOne": oneAtATime(sqlite),
            "sqliteBatched": batched,
            "memory": oneAtATime(memory),
            "raw": rawMeasure,
        },
        runs,
    )
    raw.close()
    await sqlite.close()
    return count, results


def child(quick: bool) -> None:
    async def main(reactor: Any) -> None:
        with tempfile.TemporaryDirectory(prefix="keycard-bench-") as directory:
            count, results = await measureAll(reactor, quick, directory)
        print(json.dumps({"count": count, "results": results}), flush=True)

    task.react(lambda reactor: ensureDeferred(main(reactor)))


def run(quick: bool) -> list[Figure]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.p3_revocations",
            "child",
            "quick" if quick else "full",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    count, r = out["count"], out["results"]
    label = "1M" if count == 1_000_000 else f"{count // 1000}k"
    sqliteOne = figure(
        "P3",
        f"SQLite store, one at a time, {label} revoked (vs raw sqlite3)",
        r["sqliteOne"],
        r["raw"],
        "checks/s",
    )
    met = sqliteOne.ours >= 50_000
    return [
        sqliteOne.held(">= 50,000/s", met),
        figure(
            "P3",
            f"SQLite store, batched ({PROBES:,} in flight), {label} revoked (vs raw)",
            r["sqliteBatched"],
            r["raw"],
            "checks/s",
        ),
        figure(
            "P3",
            f"memory store, one at a time, {label} revoked (vs raw sqlite3)",
            r["memory"],
            r["raw"],
            "checks/s",
        ),
    ]


if __name__ == "__main__":
    child(sys.argv[2:] == ["quick"])
