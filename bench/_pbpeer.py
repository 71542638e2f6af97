"""
The two sides of P1 and P5, each run as its own process.

    python -m bench._pbpeer server ours|stock
    python -m bench._pbpeer client ours|stock PORT CONCURRENCY new|one COUNT [warm]

The server prints its port; the client prints one JSON line: logins, seconds,
its own CPU seconds, untimed warm-up logins, failures, per-login latencies
(p50, p99), and round trips per login.
With C{warm}, the client first logs each user in once, untimed, so that a
SCRAM client has derived each password's keys (once per password, as any
long-running SCRAM client does) before the timed logins.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.credentials import UsernamePassword
from twisted.cred.portal import IRealm, Portal
from twisted.internet import task
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.spread import pb
from zope.interface import implementer

from twisted_keycard import (
    Bouncer,
    KeycardClientFactory,
    KeycardRoot,
    KeycardServerFactory,
)
from twisted_keycard.bouncer import ExchangeLimits
from twisted_keycard.scram import SCRAMAnswerer, SCRAMKeyCache, SCRAMVerifiers, Verifier

USERS = 100


def user(i: int) -> tuple[str, str]:
    return f"user{i % USERS}", f"password {i % USERS}"


class Avatar(pb.Avatar):
    def perspective_ping(self) -> str:
        return "pong"


@implementer(IRealm)
class Realm:
    def requestAvatar(
        self, avatarId: Any, mind: object, *interfaces: Any
    ) -> tuple[Any, Avatar, Callable[[], None]]:
        return pb.IPerspective, Avatar(), lambda: None


async def server(reactor: Any, side: str) -> None:
    if side == "ours":
        verifiers = SCRAMVerifiers(
            {user(i)[0]: Verifier.fromPassword(user(i)[1]) for i in range(USERS)}
        )
        bouncer = Bouncer(
            [verifiers],
            clock=reactor,
            limits=ExchangeLimits(
                maxPending=10**6,
                maxPendingPerAddress=10**6,
                maxPendingPerConnection=10**6,
            ),
        )
        root = KeycardRoot(bouncer, Portal(Realm()), maxKeycardsPerConnection=10**9)
        factory: pb.PBServerFactory = KeycardServerFactory(root)
    else:
        checker = InMemoryUsernamePasswordDatabaseDontUse(
            **{user(i)[0]: user(i)[1].encode() for i in range(USERS)}
        )
        factory = pb.PBServerFactory(Portal(Realm(), [checker]))
    port = await TCP4ServerEndpoint(
        reactor, 0, backlog=2048, interface="127.0.0.1"
    ).listen(factory)
    print(port.getHost().port, flush=True)
    await Deferred()


class Counter(pb.Broker):
    """
    Counts the messages this client sends (requests; each waits for one
    answer, so it is one round trip).
    """

    sent = 0

    def sendCall(self, *exp: Any) -> None:
        if exp and exp[0] == b"message":
            Counter.sent += 1
        super().sendCall(*exp)


class OursFactory(KeycardClientFactory):
    protocol = type("OursBroker", (Counter, KeycardClientFactory.protocol), {})


class StockFactory(pb.PBClientFactory):
    protocol = Counter


async def client(
    reactor: Any,
    side: str,
    port: int,
    concurrency: int,
    mode: str,
    count: int,
    warm: bool,
) -> None:
    caches = {user(i)[0]: SCRAMKeyCache() for i in range(USERS)}
    latencies: list[float] = []
    failures: list[str] = []
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=60)
    shared: Any = None
    if mode == "one":
        shared = OursFactory() if side == "ours" else StockFactory()
        await endpoint.connect(shared)
    remaining = list(range(count))

    async def login(i: int) -> None:
        name, password = user(i)
        factory = shared
        if factory is None:
            factory = OursFactory() if side == "ours" else StockFactory()
            await endpoint.connect(factory)
        start = time.perf_counter()
        try:
            if side == "ours":
                answerer = SCRAMAnswerer(name, password, cache=caches[name])
                await factory.login([answerer], askServer=False)
            else:
                await factory.login(UsernamePassword(name.encode(), password.encode()))
            latencies.append(time.perf_counter() - start)
        except Exception as e:
            failures.append(repr(e)[:200])
        if shared is None:
            factory.disconnect()

    async def worker() -> None:
        while remaining:
            await login(remaining.pop())

    if warm:
        # Untimed: one login per user first, as a long-running client would
        # have done, so that each SCRAM client has derived its keys once.
        for i in range(USERS):
            await login(i)
        latencies.clear()
        failures.clear()
        Counter.sent = 0

    begin, beginCpu = time.perf_counter(), time.process_time()
    await gatherResults([ensureDeferred(worker()) for _ in range(concurrency)])
    elapsed = time.perf_counter() - begin
    cpu = time.process_time() - beginCpu
    ordered = sorted(latencies) or [0.0]
    print(
        json.dumps(
            {
                "logins": len(latencies),
                "failures": len(failures),
                "failureSample": failures[:3],
                "seconds": elapsed,
                "cpu": cpu,
                "warmup": USERS if warm else 0,
                "p50": statistics.median(ordered),
                "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
                "roundTrips": Counter.sent / max(1, count),
            }
        ),
        flush=True,
    )


def main(argv: list[str]) -> None:
    role, side = argv[0], argv[1]
    if role == "server":
        task.react(lambda reactor: ensureDeferred(server(reactor, side)))
    else:
        port, concurrency, mode, count = (
            int(argv[2]),
            int(argv[3]),
            argv[4],
            int(argv[5]),
        )
        warm = argv[6:] == ["warm"]
        task.react(
            lambda reactor: ensureDeferred(
                client(reactor, side, port, concurrency, mode, count, warm)
            )
        )


if __name__ == "__main__":
    main(sys.argv[1:])
