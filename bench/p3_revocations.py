"""
P3: revocation checks per second with 1M revoked ids: the check a running
bouncer makes on the SQLite store (its L{RevocationMirror}, which a
L{RevocationFollower} filled with every revocation of the store, as at the
bouncer's start: the time and memory that takes are figures too), and the
stores' public C{isRevoked}: the SQLite store one check at a time (each
awaited before the next) and batched (10,000 checks in flight at once,
which the store answers with a few C{IN (...)} queries), and the memory
store one at a time; beside the raw sqlite3 point look-up on the same
file, in the calling thread.  Half the checks hit a revoked id.  The
revocations are recorded through C{revoke}, as the bouncer and the
C{keycard} command record them.

Every measure runs in one child process with a running reactor, in turn,
each round starting one further along.

    python -m bench.p3_revocations child quick|full    # prints one JSON line
"""

from __future__ import annotations

import gc
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from typing import Any

from twisted.internet import task
from twisted.internet.defer import ensureDeferred, gatherResults

from twisted_keycard.bouncer import RevocationFollower, newKeycardId
from twisted_keycard.store import MemoryStore, Revocation
from twisted_keycard.store.sqlite import SQLiteStore
from twisted_keycard.tokens import RevocationMirror

from ._common import Figure, asyncRate, figure, inChild, interleaved, rate, single

PROBES = 10_000
FILL = 100_000

NOTES = [
    "P3: the bouncer's check on SQLite: RevocationMirror.isRevoked, the"
    " mirror filled by RevocationFollower(SQLiteStore, ...).catchUp() as a"
    " starting bouncer fills it (catch-up time and resident memory per"
    " revocation measured); isRevoked on SQLiteStore (a file in a temporary"
    " directory, the store's defaults: WAL, synchronous=FULL, its own"
    " database thread) and MemoryStore; 'one at a time' awaits each check"
    f" before the next, 'batched' has {PROBES:,} in flight; peer: sqlite3"
    " SELECT by primary key on the same file in the calling thread; goal:"
    " the bouncer's check on SQLite, one at a time, >= 50,000 checks/s",
]


def residentBytes() -> int:
    """
    This process's resident memory, after a garbage collection.
    """
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def followedMirror(reactor: Any, store: Any) -> tuple[Any, float, float]:
    """
    A mirror of every revocation of C{store}, read as a starting bouncer
    reads them.

    @return: the mirror, the seconds the catch-up took, and the resident
        bytes it added.
    """

    async def nobodyHolds(revocations: list[Revocation]) -> None:
        pass

    before = residentBytes()
    start = time.perf_counter()
    mirror = RevocationMirror(reactor)
    await RevocationFollower(store, reactor, nobodyHolds, mirror=mirror).catchUp()
    seconds = time.perf_counter() - start
    return mirror, seconds, residentBytes() - before


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
    mirror, catchUp, resident = await followedMirror(reactor, sqlite)
    if len(mirror) != count:
        raise AssertionError(f"{len(mirror)} revocations read of {count}")
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

    async def mirrorMeasure() -> float:
        return rate(lambda: mirror.isRevoked(nextProbe()), seconds)

    results = await interleaved(
        {
            "mirror": mirrorMeasure,
            "sqliteOne": oneAtATime(sqlite),
            "sqliteBatched": batched,
            "memory": oneAtATime(memory),
            "raw": rawMeasure,
        },
        runs,
    )
    raw.close()
    await sqlite.close()
    results["catchUp"] = [catchUp]
    results["resident"] = [resident / count]
    return count, results


def child(quick: bool) -> None:
    async def main(reactor: Any) -> None:
        with tempfile.TemporaryDirectory(prefix="keycard-bench-") as directory:
            count, results = await measureAll(reactor, quick, directory)
        print(json.dumps({"count": count, "results": results}), flush=True)

    task.react(lambda reactor: ensureDeferred(main(reactor)))


def run(quick: bool) -> list[Figure]:
    out = inChild("bench.p3_revocations", "quick" if quick else "full")
    count, r = out["count"], out["results"]
    label = "1M" if count == 1_000_000 else f"{count // 1000}k"
    bouncers = figure(
        "P3",
        f"bouncer's check on SQLite (its mirror), one at a time, {label} revoked"
        " (vs raw)",
        r["mirror"],
        r["raw"],
        "checks/s",
    )
    return [
        bouncers.held(">= 50,000/s", bouncers.ours >= 50_000),
        single(
            "P3",
            f"bouncer's start on SQLite: read {label} revocations into its mirror",
            r["catchUp"][0],
            "s",
        ),
        single(
            "P3",
            f"bouncer's mirror: resident memory per revocation, {label} revoked",
            r["resident"][0],
            "bytes",
        ),
        figure(
            "P3",
            f"SQLite store isRevoked, one at a time, {label} revoked (vs raw sqlite3)",
            r["sqliteOne"],
            r["raw"],
            "checks/s",
        ),
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
