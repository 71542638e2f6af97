"""
P6: the Redis store.  Revocation checks per second through the store's
public C{isRevoked} on Redis, one at a time (each awaited before the next,
as one token login does) and pipelined (1,000 in flight on its one
connection), beside a raw txredisapi C{GET} loop on the same Redis; and
C{TokenChecker.requestAvatarId} on the Redis store as a running bouncer has
it (its keyring loaded, the revocations in its mirror), and without the
mirror (one C{EXISTS} and one script per token, as before the bouncer has
caught up), beside the same raw C{GET} loop.

Then revocation propagation: three bouncer processes (C{twistd
keycard-bouncer} on 127.0.0.1, .2 and .3, a data directory made with
C{keycard init --store redis://...}), alice logged in on each (a password
on the first, her token on the others); what C{keycard revoke --avatar
alice} does (the C{Revoker} of L{twisted_keycard.admin}'s operation on a
C{RedisStore}, in this process) until the last of the three clients is
dropped: p50 and p99 over the rounds; and the command itself as a user
runs it (a new Python process each time) for a few rounds.

    python -m bench.p6_redis child quick|full    # prints one JSON line
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import txredisapi
from twisted.internet import task
from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint

from twisted_keycard import KeycardClientFactory
from twisted_keycard.admin._operations import revokeMatching
from twisted_keycard.bouncer import newKeycardId
from twisted_keycard.scram import SCRAMAnswerer
from twisted_keycard.store import Revocation
from twisted_keycard.store.redis import KeyEncryptionKey, RedisStore
from twisted_keycard.tokens import (
    Keyring,
    TokenAnswerer,
    TokenChecker,
    TokenClaims,
    TokenExchange,
    sign,
)
from twisted_keycard.tokens._tokens import KeyringHolder

from ._common import (
    Figure,
    asyncRate,
    figure,
    inChild,
    interleaved,
    percentile,
    single,
)
from .p2_tokens import bouncersChecker

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
TWISTD = str(Path(sys.executable).parent / "twistd")
HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
IN_FLIGHT = 1000
REVOKED = 100_000
PASSWORD = "bench password"  # noqa: S105 - a bench user's

NOTES = [
    "P6: RedisStore on a redis-server started for the run (loopback, AOF"
    " with appendfsync always); 'one at a time' awaits each isRevoked before"
    f" the next, 'pipelined' has {IN_FLIGHT:,} in flight on the store's one"
    " connection; peer: txredisapi GET of one key, one at a time, on its own"
    " connection; TokenChecker.requestAvatarId on the Redis store as a"
    " running bouncer has it (keyring loaded, revocations in its"
    " RevocationMirror; goal >= 20x the raw GET rate), and without the"
    " mirror (the store asked per token); propagation: 3 twistd"
    " keycard-bouncer processes on 127.0.0.1-3, from the revoke operation"
    " to the last client dropped (goal p99 < 100 ms); the keycard command"
    " adds a Python start",
]


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def startRedis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = freePort()
    proc = subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
            "--save", "", "--appendonly", "yes", "--appendfsync", "always",
            "--logfile", "",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    seen, deadline = b"", time.monotonic() + 30
    while b"Ready to accept connections" not in seen:
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not start: {seen!r}")
        if select.select([proc.stdout], [], [], 1.0)[0]:
            seen += os.read(proc.stdout.fileno(), 65536)
    proc.stdout.close()
    return proc, f"redis://127.0.0.1:{port}/0"


def keycard(*args: str, stdin: str = "") -> None:
    subprocess.run(
        [sys.executable, "-m", "twisted_keycard.admin", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        check=True,
    )


async def rates(reactor: Any, url: str, quick: bool) -> dict[str, list[float]]:
    seconds, runs = (0.4, 3) if quick else (1.2, 5)
    store = await RedisStore.open(
        url + "?prefix=rates:", reactor, keyEncryptionKey=KeyEncryptionKey.generate()
    )
    now = reactor.seconds()
    revoked = [newKeycardId() for _ in range(REVOKED // (10 if quick else 1))]
    for start in range(0, len(revoked), 1000):
        chunk = revoked[start : start + 1000]
        await store.revoke([Revocation(k, now + 3600, now) for k in chunk])
    probes = revoked[: IN_FLIGHT // 2] + [newKeycardId() for _ in range(IN_FLIGHT // 2)]
    keyring = Keyring.generate(now)
    await store.saveKeyring(keyring)
    checker = await bouncersChecker(reactor, store)
    noMirror = TokenChecker(store, KeyringHolder(store, reactor), reactor)
    tokens = [
        sign(
            TokenClaims(
                keycardId=newKeycardId(), avatarId="alice", issued=now,
                expires=now + 3600, bouncerName="b", requesterName="r",
            ),
            keyring.signing,
        )
        for _ in range(100)
    ]  # fmt: skip
    raw = await txredisapi.Connection("127.0.0.1", int(url.split(":")[2].split("/")[0]))
    cursor = [0]

    def nextIndex(size: int) -> int:
        cursor[0] = (cursor[0] + 1) % size
        return cursor[0]

    async def one() -> None:
        await store.isRevoked(probes[nextIndex(len(probes))])

    async def pipelined() -> None:
        answers = await gatherResults([store.isRevoked(k) for k in probes])
        if sum(answers) != len(probes) // 2:
            raise AssertionError(f"{sum(answers)} revoked of {len(probes)}")

    async def token() -> None:
        await checker.requestAvatarId(
            TokenExchange(tokens[nextIndex(len(tokens))], "127.0.0.1", "r")
        )

    mirror = checker.mirror
    assert mirror is not None

    async def mirrored() -> None:
        mirror.isRevoked(probes[nextIndex(len(probes))])

    async def tokenNoMirror() -> None:
        await noMirror.requestAvatarId(
            TokenExchange(tokens[nextIndex(len(tokens))], "127.0.0.1", "r")
        )

    for k in probes[: len(probes) // 2]:
        await raw.set(f"raw:{k}", "1")

    async def get() -> None:
        await raw.get(f"raw:{probes[nextIndex(len(probes))]}")

    async def rate(fn: Any, per: int = 1) -> float:
        return await asyncRate(fn, seconds) * per

    results = await interleaved(
        {
            "one": lambda: rate(one),
            "pipelined": lambda: rate(pipelined, len(probes)),
            "token": lambda: rate(token),
            "tokenNoMirror": lambda: rate(tokenNoMirror),
            "mirror": lambda: rate(mirrored),
            "raw": lambda: rate(get),
        },
        runs,
    )
    await raw.disconnect()
    await store.close()
    return results


async def propagation(
    reactor: Any, url: str, directory: Path, quick: bool
) -> dict[str, list[float]]:
    data = directory / "data"
    keycard("init", str(data), "--store", url)
    keycard("user", "add", "--data-dir", str(data), "alice", stdin=PASSWORD)
    bouncers, ports = [], []
    for host in HOSTS:
        port = freePort()
        log = open(directory / f"{host}.log", "wb")  # noqa: SIM115 - closed below
        bouncers.append(
            (
                subprocess.Popen(
                    [TWISTD, "-n", "--pidfile=", "keycard-bouncer", "--data-dir",
                     str(data), "--listen", f"tcp:{port}:interface={host}",
                     "--name", host, "--insecure-redis"],
                    stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=ROOT,
                ),
                log,
            )
        )  # fmt: skip
        ports.append((host, port))
    store = await RedisStore.open(url, reactor)
    try:
        for host, port in ports:
            await waitForPort(reactor, host, port)
        rounds = 20 if quick else 100
        operation = [await revokeOnce(reactor, ports, store) for _ in range(rounds)]
        command = [
            await revokeOnce(reactor, ports, None, data)
            for _ in range(3 if quick else 5)
        ]
    finally:
        await store.close()
        for proc, log in bouncers:
            proc.terminate()
            proc.wait(30)
            log.close()
    return {"operation": operation, "command": command}


async def waitForPort(reactor: Any, host: str, port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            await TCP4ClientEndpoint(reactor, host, port).connect(
                KeycardClientFactory()
            )
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await task.deferLater(reactor, 0.1, lambda: None)


async def revokeOnce(
    reactor: Any, ports: list[tuple[str, int]], store: Any, data: Path | None = None
) -> float:
    """
    Log alice in on every bouncer, revoke her, and time the drops.

    @return: seconds from the revocation to the last client dropped.
    """
    dropped: list[float] = []
    brokers = []
    token = None
    for address in ports:
        factory = KeycardClientFactory()
        brokers.append(await TCP4ClientEndpoint(reactor, *address).connect(factory))
        answerer: Any = (
            SCRAMAnswerer("alice", PASSWORD) if token is None else TokenAnswerer(token)
        )
        login = await factory.loginWithKeycard([answerer])
        token = token or login.keycard.token
        login.perspective.notifyOnDisconnect(
            lambda _: dropped.append(time.perf_counter())
        )
    start = time.perf_counter()
    if data is None:
        await revokeMatching(store, reactor, None, "alice", None, "bench")
    else:
        await task.deferLater(reactor, 0, lambda: None)
        subprocess.Popen(
            [sys.executable, "-m", "twisted_keycard.admin", "revoke",
             "--data-dir", str(data), "--avatar", "alice"],
            env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while len(dropped) < len(ports):
        if time.monotonic() > deadline:
            raise RuntimeError("a bouncer did not drop its client")
        await task.deferLater(reactor, 0.001, lambda: None)
    for broker in brokers:
        broker.transport.loseConnection()
    return max(dropped) - start


def child(quick: bool) -> None:
    async def main(reactor: Any) -> None:
        with tempfile.TemporaryDirectory(prefix="keycard-bench-") as directory:
            redis, url = startRedis(Path(directory))
            try:
                results = await rates(reactor, url, quick)
                results.update(await propagation(reactor, url, Path(directory), quick))
            finally:
                redis.terminate()
                redis.wait(30)
        print(json.dumps(results), flush=True)

    task.react(lambda reactor: ensureDeferred(main(reactor)))


def run(quick: bool) -> list[Figure]:
    r = inChild("bench.p6_redis", "quick" if quick else "full")
    token = figure(
        "P6",
        "Redis: TokenChecker.requestAvatarId, a running bouncer's (mirror;"
        " vs raw txredisapi GET)",
        r["token"],
        r["raw"],
        "checks/s",
    )
    ops = [x * 1000 for x in r["operation"]]
    commands = [x * 1000 for x in r["command"]]
    p50, p99 = percentile(ops, 0.5), percentile(ops, 0.99)
    return [
        figure(
            "P6",
            "Redis store isRevoked, one at a time (vs raw txredisapi GET)",
            r["one"],
            r["raw"],
            "checks/s",
        ),
        figure(
            "P6",
            f"Redis store isRevoked, pipelined ({IN_FLIGHT:,} in flight; vs raw GET)",
            r["pipelined"],
            r["raw"],
            "checks/s",
        ),
        token.ratioAtLeast(20),
        figure(
            "P6",
            "Redis: the bouncer's revocation check (its mirror, followed from"
            " the store; vs raw GET)",
            r["mirror"],
            r["raw"],
            "checks/s",
        ),
        figure(
            "P6",
            "Redis: TokenChecker.requestAvatarId, no mirror (vs raw GET)",
            r["tokenNoMirror"],
            r["raw"],
            "checks/s",
        ),
        single("P6", "revoke to 3 bouncers dropping the client, p50", p50, "ms"),
        single("P6", f"revoke to 3 bouncers dropping the client, p99 ({len(ops)}"
               " rounds)", p99, "ms").held("p99 < 100 ms", p99 < 100),
        single("P6", "keycard revoke command (a Python start) to 3 drops, p50",
               percentile(commands, 0.5), "ms"),
    ]  # fmt: skip


if __name__ == "__main__":
    child(sys.argv[2:] == ["quick"])
