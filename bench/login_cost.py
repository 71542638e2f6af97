"""
The CPU cost of one login with both sides in one process, split into server
and client, ours beside Twisted's stock PB login; a tool for profiling P1,
not one of its figures.

    python bench/login_cost.py [COUNT [SIDE...]]   # sides: ours, service, stock

Ours is P1's embedded configuration (see L{bench._pbpeer}: a L{Bouncer} on
a L{MemoryStore} with tokens, L{KeycardRoot}, L{KeycardServerFactory}, the
default limits) and the default client (C{KeycardClientFactory.login},
with its defaults).  C{service} is the bouncer service's store and
throttle on it: an L{SQLiteStore} (WAL) whose work runs inline, in the
server's time, not in its thread (each write a transaction of its own: no
group commit), and C{Throttle()}, the service's default; the CPU of its
thread is counted as well as the time.  Both sides talk over an in-memory
transport (L{twisted.test.iosim}), so there are no sockets and no reactor:
what is left is the code of the two brokers and of the login.  As in P1's
persistent layout, a connection carries L{PER_CONNECTION} logins (the
keycards one connection may hold by default), then closes, and a new one
is made, for both sides alike.  The server's part is the time spent in its
broker's C{dataReceived}; the client's part is the rest (its own broker and
login code, connection set-up, and the in-memory transport, which costs the
same for both).  Each figure is the best of three runs.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.cred.credentials import UsernamePassword
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.spread import pb
from twisted.test.iosim import FakeTransport, connect

from bench._pbpeer import PER_CONNECTION, USERS, embeddedFactory, stockFactory, user
from twisted_keycard import KeycardClientFactory
from twisted_keycard.bouncer import Throttle
from twisted_keycard.scram import SCRAMAnswerer, SCRAMKeyCache
from twisted_keycard.store.sqlite import SQLiteStore

SERVER = IPv4Address("TCP", "127.0.0.1", 8800)
CLIENT = IPv4Address("TCP", "127.0.0.1", 40000)


class Side:
    """
    One side's server factory and a way to log in to it in memory.
    """

    def __init__(self, side: str) -> None:
        self.side = side
        self.server: Any
        if side == "stock":
            self.server = stockFactory()
        elif side == "service":
            # Removed with the runner, at the latest when the process ends.
            self._tmp = tempfile.TemporaryDirectory(prefix="keycard-cost-")
            store = SQLiteStore(self._tmp.name + "/keycard.db", threaded=False)
            self.server = embeddedFactory(Clock(), {}, store, throttle=Throttle())
        else:
            self.server = embeddedFactory(Clock(), {})
        self.caches = {user(i)[0]: SCRAMKeyCache() for i in range(USERS)}
        self.inServer = 0.0
        self.serverCpu = 0.0

    def connection(self) -> tuple[Any, Any]:
        """
        A new in-memory connection: the client factory and the pump.
        """
        client: Any = (
            KeycardClientFactory() if self.side != "stock" else pb.PBClientFactory()
        )
        serverBroker = self.server.buildProtocol(CLIENT)
        clientBroker = client.buildProtocol(SERVER)

        def timed(method: Any) -> Any:
            def call(*args: Any) -> Any:
                start, cpu = time.perf_counter(), time.thread_time()
                try:
                    return method(*args)
                finally:
                    self.inServer += time.perf_counter() - start
                    self.serverCpu += time.thread_time() - cpu

            return call

        # The logins, and the end of the connection (its keycards released).
        serverBroker.dataReceived = timed(serverBroker.dataReceived)
        serverBroker.connectionLost = timed(serverBroker.connectionLost)
        pump = connect(
            serverBroker,
            FakeTransport(serverBroker, True, SERVER, CLIENT),
            clientBroker,
            FakeTransport(clientBroker, False, CLIENT, SERVER),
        )
        return client, pump

    def logins(self, first: int, count: int) -> None:
        client, pump = self.connection()
        for i in range(first, first + count):
            name, password = user(i)
            if self.side != "stock":
                answerer = SCRAMAnswerer(name, password, cache=self.caches[name])
                d = client.login([answerer])
            else:
                d = client.login(UsernamePassword(name.encode(), password.encode()))
            pump.flush()
            results: list[object] = []
            d.addBoth(results.append)
            if not (results and isinstance(results[0], pb.RemoteReference)):
                raise RuntimeError(f"{self.side} login failed: {results}")
        client.disconnect()
        pump.flush()


def measure(side: str, count: int) -> tuple[float, float, float]:
    """
    @return: microseconds per login on the server side, the server's CPU
        of them, and in all.
    """
    runner = Side(side)

    def logins(total: int) -> None:
        for first in range(0, total, PER_CONNECTION):
            runner.logins(first, min(PER_CONNECTION, total - first))

    logins(3 * USERS)
    best: tuple[float, float, float] | None = None
    for _ in range(3):
        runner.inServer = runner.serverCpu = 0.0
        start = time.perf_counter()
        logins(count)
        total = time.perf_counter() - start
        if best is None or total < best[2]:
            best = (runner.inServer, runner.serverCpu, total)
    assert best is not None
    return best[0] / count * 1e6, best[1] / count * 1e6, best[2] / count * 1e6


def main(argv: list[str]) -> None:
    count = int(argv[0]) if argv else 3000
    sides = argv[1:] or ["ours", "stock"]
    print(
        f"{'side':<8} {'server us':>10} {'server CPU us':>14} {'client us':>10}"
        f" {'total us':>10}"
    )
    for side in sides:
        server, cpu, total = measure(side, count)
        print(
            f"{side:<8} {server:>10.0f} {cpu:>14.0f} {total - server:>10.0f}"
            f" {total:>10.0f}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
