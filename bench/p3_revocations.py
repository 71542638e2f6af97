"""
P3: revocation checks per second with many revoked entries: the memory
store, and the SQLite store (through its database thread, with checks that
arrive together answered by one query), beside the raw sqlite3 point lookup
on the same file.  Half the checks hit a revoked id.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted_keycard.bouncer import newKeycardId
from twisted_keycard.store import MemoryStore, Revocation

from ._common import Figure, figure, rates

ROOT = Path(__file__).resolve().parent.parent


def ids(count: int) -> list[str]:
    return [newKeycardId() for _ in range(count)]


def fillSQLite(path: str, revoked: list[str]) -> None:
    from twisted_keycard.store.sqlite._schema import connect

    connection = connect(path)
    connection.execute("BEGIN")
    connection.executemany(
        "INSERT INTO revocations (keycard_id, expires, revoked_at, reason)"
        " VALUES (?, ?, ?, '')",
        ((k, 4e9, 1.0) for k in revoked),
    )
    connection.execute("COMMIT")
    connection.close()


def sqliteChild(path: str, probesFile: str, runs: int) -> None:
    """
    In a child process (the reactor runs once per process): time batches of
    concurrent isRevoked calls through SQLiteStore.
    """
    from twisted.internet import task
    from twisted.internet.defer import ensureDeferred, gatherResults

    from twisted_keycard.store.sqlite import SQLiteStore

    probes = json.loads(Path(probesFile).read_text())

    async def main(reactor: Any) -> None:
        store = await SQLiteStore.open(path, reactor)
        results = []
        for _ in range(runs):
            start = time.perf_counter()
            answers = await gatherResults([store.isRevoked(k) for k in probes])
            elapsed = time.perf_counter() - start
            assert sum(answers) == len(probes) // 2
            results.append(len(probes) / elapsed)
        await store.close()
        print(json.dumps(results))

    task.react(lambda reactor: ensureDeferred(main(reactor)))


def run(quick: bool) -> list[Figure]:
    count = 100_000 if quick else 1_000_000
    label = f"{count // 1000}k" if count < 1_000_000 else "1M"
    seconds, runs = (1.0, 3) if quick else (4.0, 5)
    revoked = ids(count)
    probes = [revoked[i * 7 % count] for i in range(5000)] + ids(5000)

    store = MemoryStore()
    store.revoke([Revocation(k, 4e9, 1.0) for k in revoked])
    cursor = {"i": 0}

    def memoryCheck() -> None:
        i = cursor["i"] = (cursor["i"] + 1) % len(probes)
        store.isRevokedNow(probes[i])

    memory = rates(memoryCheck, seconds, runs)
    store.flushRevocations(5e9)  # free the memory before the SQLite part

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.db")
        fillSQLite(path, revoked)
        raw = sqlite3.connect(path)

        def rawCheck() -> None:
            i = cursor["i"] = (cursor["i"] + 1) % len(probes)
            raw.execute(
                "SELECT 1 FROM revocations WHERE keycard_id = ?", (probes[i],)
            ).fetchone()

        peer = rates(rawCheck, seconds, runs)
        raw.close()
        probesFile = os.path.join(tmp, "probes.json")
        Path(probesFile).write_text(json.dumps(probes))
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.p3_revocations",
                path,
                probesFile,
                str(runs * 2),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        ours = json.loads(child.stdout.strip().splitlines()[-1])
    return [
        figure(
            "P3",
            f"revocation checks, memory store, {label} revoked (vs raw sqlite3)",
            memory,
            peer,
            "checks/s",
        ),
        figure(
            "P3",
            f"revocation checks, SQLite store, {label} revoked (vs raw sqlite3)",
            ours,
            peer,
            "checks/s",
        ),
    ]


if __name__ == "__main__":
    sqliteChild(sys.argv[1], sys.argv[2], int(sys.argv[3]))
