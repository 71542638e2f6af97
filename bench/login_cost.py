"""
The CPU cost of one login with both sides in one process, split into server
and client, ours beside Twisted's stock PB login; a tool for profiling P1,
not one of its figures.

    python bench/login_cost.py [COUNT]

Both sides talk over an in-memory transport (L{twisted.test.iosim}), so
there are no sockets and no reactor: what is left is the code of the two
brokers and of the login.  The server's part is the time spent in its
broker's C{dataReceived}; the client's part is the rest (its own broker and
login code, and the in-memory transport, which costs the same for both).
Each figure is the best of three runs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.credentials import UsernamePassword
from twisted.cred.portal import Portal
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.spread import pb
from twisted.test.iosim import FakeTransport, connect

from bench._pbpeer import USERS, Realm, user
from twisted_keycard import (
    Bouncer,
    KeycardClientFactory,
    KeycardRoot,
    KeycardServerFactory,
)
from twisted_keycard.bouncer import ExchangeLimits
from twisted_keycard.scram import SCRAMAnswerer, SCRAMKeyCache, SCRAMVerifiers, Verifier


def measure(side: str, count: int) -> tuple[float, float]:
    """
    @return: microseconds per login on the server side and in all.
    """
    server: Any
    client: Any
    if side == "ours":
        verifiers = SCRAMVerifiers(
            {user(i)[0]: Verifier.fromPassword(user(i)[1]) for i in range(USERS)}
        )
        bouncer = Bouncer(
            [verifiers],
            clock=Clock(),
            limits=ExchangeLimits(
                maxPending=10**6,
                maxPendingPerAddress=10**6,
                maxPendingPerConnection=10**6,
            ),
        )
        root = KeycardRoot(bouncer, Portal(Realm()), maxKeycardsPerConnection=10**9)
        server, client = KeycardServerFactory(root), KeycardClientFactory()
    else:
        checker = InMemoryUsernamePasswordDatabaseDontUse(
            **{user(i)[0]: user(i)[1].encode() for i in range(USERS)}
        )
        server = pb.PBServerFactory(Portal(Realm(), [checker]))
        client = pb.PBClientFactory()
    serverAddress = IPv4Address("TCP", "127.0.0.1", 8800)
    clientAddress = IPv4Address("TCP", "127.0.0.1", 40000)
    serverBroker = server.buildProtocol(clientAddress)
    clientBroker = client.buildProtocol(serverAddress)
    inServer = [0.0]
    received = serverBroker.dataReceived

    def timed(data: bytes) -> None:
        start = time.perf_counter()
        received(data)
        inServer[0] += time.perf_counter() - start

    serverBroker.dataReceived = timed
    pump = connect(
        serverBroker,
        FakeTransport(serverBroker, True, serverAddress, clientAddress),
        clientBroker,
        FakeTransport(clientBroker, False, clientAddress, serverAddress),
    )
    caches = {user(i)[0]: SCRAMKeyCache() for i in range(USERS)}

    def login(i: int) -> None:
        name, password = user(i)
        if side == "ours":
            answerer = SCRAMAnswerer(name, password, cache=caches[name])
            d = client.login([answerer], askServer=False)
        else:
            d = client.login(UsernamePassword(name.encode(), password.encode()))
        pump.flush()
        results: list[object] = []
        d.addBoth(results.append)
        if not (results and isinstance(results[0], pb.RemoteReference)):
            raise RuntimeError(f"{side} login failed: {results}")

    for i in range(3 * USERS):
        login(i)
    best: tuple[float, float] | None = None
    for _ in range(3):
        inServer[0] = 0.0
        start = time.perf_counter()
        for i in range(count):
            login(i)
        total = time.perf_counter() - start
        if best is None or total < best[1]:
            best = (inServer[0], total)
    assert best is not None
    return best[0] / count * 1e6, best[1] / count * 1e6


def main(argv: list[str]) -> None:
    count = int(argv[0]) if argv else 3000
    print(f"{'side':<6} {'server us':>10} {'client us':>10} {'total us':>10}")
    for side in ("ours", "stock"):
        server, total = measure(side, count)
        print(f"{side:<6} {server:>10.0f} {total - server:>10.0f} {total:>10.0f}")


if __name__ == "__main__":
    main(sys.argv[1:])
