"""
The two sides of P1 and P5, each run as its own process.

    python -m bench._pbpeer server stock|embedded [LIMITS-JSON]
    python -m bench._pbpeer client stock|ours PORT CONCURRENCY new|persistent
        COUNT FIRST [barrier]

The server prints its port.  C{embedded} is a L{Bouncer} as a user embeds
it: a L{MemoryStore}, tokens on (C{TokenPolicy()}), no throttling (the
default), the default limits except those named in C{LIMITS-JSON}
(C{{"connection": {...}, "exchange": {...}}}, keywords of
L{ConnectionLimits} and L{ExchangeLimits}), started as a service, behind a
L{KeycardRoot} and a L{KeycardServerFactory}.  C{stock} is Twisted's PB
login with an in-memory checker.

The client logs each user in once, untimed, on a new connection (so that a
SCRAM client has derived each password's keys, as a long-running client
has; the stock client alike), then runs COUNT timed logins with
CONCURRENCY in flight: C{new} opens a connection for each login;
C{persistent} gives each of the CONCURRENCY workers its own connection,
kept for L{PER_CONNECTION} logins (the server's default cap on keycards one
connection holds) and then replaced.  C{ours} logs in as a user's client
does: C{KeycardClientFactory.login([SCRAMAnswerer(...)])} (the defaults: no
call to ask the server's kinds), with a L{SCRAMKeyCache} per user.

Real clients come from many hosts, and a server limits what one address
may do (connections not logged in, exchanges in progress, failed logins,
which count logins in progress): so the client spreads its workers over
loopback source addresses, L{PER_ADDRESS} workers each, from
C{127.0.0.FIRST} on (see L{sourceAddress}), binding each connection's
socket; its untimed logins come from C{127.0.0.FIRST}.

With C{barrier}, the client prints C{ready} after its untimed logins and
waits for a line on its standard input before timing.  It ends by printing
one JSON line: logins, failures, seconds, its CPU (ns, from schedstat),
every login's latency (ms), and the PB requests it sent per timed login
(each waits for one answer: round trips), counted on its brokers.
"""

from __future__ import annotations

import inspect
import json
import os
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
    MemoryStore,
)
from twisted_keycard.bouncer import ExchangeLimits, TokenPolicy
from twisted_keycard.pb import ConnectionLimits
from twisted_keycard.scram import SCRAMAnswerer, SCRAMKeyCache, SCRAMVerifiers, Verifier

from ._common import cpuNs

USERS = 100

#: The listen backlog of every server, ours and the peer's alike, so that a
#: burst of connections measures the servers, not the kernel's accept queue.
BACKLOG = 1024

#: Logins on one persistent connection: the keycards one connection may
#: hold by default (a client gives them back only by disconnecting).
PER_CONNECTION: int = (
    inspect.signature(KeycardRoot).parameters["maxKeycardsPerConnection"].default
)


#: In-flight workers that share one loopback source address: under every
#: per-address default of the service (16 connections not logged in, 100
#: exchanges in progress, 30 failed logins, counted from a login's start).
PER_ADDRESS = 10

#: The source address of the first worker of the first client process
#: (127.0.0.1 is left to whatever else talks to the server).
FIRST_SOURCE = 2


def sourceAddress(first: int, worker: int) -> str:
    """
    The loopback address worker number C{worker} connects from, when the
    client's first worker connects from C{127.0.0.first}.
    """
    n = first + worker // PER_ADDRESS
    if not FIRST_SOURCE <= n <= 254:
        raise ValueError(f"no loopback source address 127.0.0.{n}")
    return f"127.0.0.{n}"


def addressesFor(workers: int) -> int:
    """
    The source addresses C{workers} in-flight workers take.
    """
    return -(-workers // PER_ADDRESS)


#: Seconds a login may take before it counts as failed.
LOGIN_TIMEOUT = 60.0


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


def embeddedFactory(
    reactor: Any, limits: dict[str, Any], store: Any = None, **options: Any
) -> pb.PBServerFactory:
    """
    The embedded configuration, with the defaults but C{limits}; C{reactor}
    is its clock (the default, in a server process).  C{store} (a
    L{MemoryStore} by default) and C{options} (L{Bouncer}'s keywords) make
    it another configuration.
    """
    verifiers = SCRAMVerifiers(
        {user(i)[0]: Verifier.fromPassword(user(i)[1]) for i in range(USERS)}
    )
    bouncer = Bouncer(
        [verifiers],
        MemoryStore() if store is None else store,
        clock=reactor,
        tokens=TokenPolicy(),
        limits=ExchangeLimits(**limits.get("exchange", {})),
        **options,
    )
    bouncer.startService()
    root = KeycardRoot(bouncer, Portal(Realm()), clock=reactor)
    return KeycardServerFactory(
        root, limits=ConnectionLimits(**limits.get("connection", {})), clock=reactor
    )


def stockFactory() -> pb.PBServerFactory:
    checker = InMemoryUsernamePasswordDatabaseDontUse(
        **{user(i)[0]: user(i)[1].encode() for i in range(USERS)}
    )
    return pb.PBServerFactory(Portal(Realm(), [checker]))


async def server(reactor: Any, side: str, limits: dict[str, Any]) -> None:
    factory = stockFactory() if side == "stock" else embeddedFactory(reactor, limits)
    port = await TCP4ServerEndpoint(
        reactor, 0, backlog=BACKLOG, interface="127.0.0.1"
    ).listen(factory)
    print(port.getHost().port, flush=True)
    await Deferred()


class Counter(pb.Broker):
    """
    Counts the requests this client's brokers send (PB C{message}s; each
    waits for one answer, so each is a round trip).
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


class Client:
    """
    One client process's logins.
    """

    def __init__(self, reactor: Any, side: str, port: int, first: int) -> None:
        self.reactor = reactor
        self.side = side
        self.port = port
        self.first = first
        self.caches = {user(i)[0]: SCRAMKeyCache() for i in range(USERS)}
        self.latencies: list[float] = []
        self.failures: list[str] = []

    async def connect(self, worker: int) -> Any:
        factory = OursFactory() if self.side == "ours" else StockFactory()
        source = sourceAddress(self.first, worker)
        endpoint = TCP4ClientEndpoint(
            self.reactor, "127.0.0.1", self.port, timeout=60, bindAddress=(source, 0)
        )
        await endpoint.connect(factory)
        return factory

    async def login(self, factory: Any, i: int) -> None:
        name, password = user(i)
        start = time.perf_counter()
        try:
            if self.side == "ours":
                answerer = SCRAMAnswerer(name, password, cache=self.caches[name])
                d = factory.login([answerer])
            else:
                d = factory.login(UsernamePassword(name.encode(), password.encode()))
            await d.addTimeout(LOGIN_TIMEOUT, self.reactor)
            self.latencies.append((time.perf_counter() - start) * 1000)
        except Exception as e:
            self.failures.append(repr(e)[:200])

    async def newConnection(self, worker: int, i: int) -> None:
        try:
            factory = await self.connect(worker)
        except Exception as e:
            self.failures.append(repr(e)[:200])
            return
        await self.login(factory, i)
        factory.disconnect()

    async def worker(self, worker: int, mode: str, remaining: list[int]) -> None:
        factory, used = None, 0
        while remaining:
            i = remaining.pop()
            if mode == "new":
                await self.newConnection(worker, i)
                continue
            if factory is None or used == PER_CONNECTION:
                if factory is not None:
                    factory.disconnect()
                try:
                    factory, used = await self.connect(worker), 0
                except Exception as e:
                    self.failures.append(repr(e)[:200])
                    factory = None
                    continue
            used += 1
            await self.login(factory, i)
        if factory is not None:
            factory.disconnect()


async def client(
    runner: Client, concurrency: int, mode: str, count: int, barrier: bool
) -> None:
    """
    Log every user in once, untimed, on a connection each, then run
    C{count} timed logins as the layout says and print their JSON line.
    """
    for i in range(USERS):
        await runner.newConnection(0, i)
    warmFailures = runner.failures[:3]
    runner.latencies.clear()
    runner.failures.clear()
    if barrier:
        print("ready", flush=True)
        sys.stdin.readline()
    Counter.sent = 0
    remaining = list(range(count))
    begin, beginCpu = time.perf_counter(), cpuNs(os.getpid())
    await gatherResults(
        [
            ensureDeferred(runner.worker(worker, mode, remaining))
            for worker in range(concurrency)
        ]
    )
    elapsed = time.perf_counter() - begin
    cpu = cpuNs(os.getpid()) - beginCpu
    print(
        json.dumps(
            {
                "logins": len(runner.latencies),
                "failures": len(runner.failures),
                "failureSample": runner.failures[:3] or warmFailures,
                "seconds": elapsed,
                "cpuNs": cpu,
                "warmup": USERS,
                "latencies": [round(v, 4) for v in runner.latencies],
                "roundTrips": Counter.sent / max(1, count),
            }
        ),
        flush=True,
    )


def main(argv: list[str]) -> None:
    role, side = argv[0], argv[1]
    if role == "server":
        limits = json.loads(argv[2]) if argv[2:] else {}
        task.react(lambda reactor: ensureDeferred(server(reactor, side, limits)))
    else:
        port, concurrency, mode, count, first = (
            int(argv[2]),
            int(argv[3]),
            argv[4],
            int(argv[5]),
            int(argv[6]),
        )
        barrier = argv[7:] == ["barrier"]
        task.react(
            lambda reactor: ensureDeferred(
                client(
                    Client(reactor, side, port, first),
                    concurrency,
                    mode,
                    count,
                    barrier,
                )
            )
        )


if __name__ == "__main__":
    main(sys.argv[1:])
