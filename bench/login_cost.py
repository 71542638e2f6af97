"""
The CPU cost of one login with both sides in one process, split into server
and client, ours beside Twisted's stock PB login; a tool for profiling P1,
not one of its figures.

    python bench/login_cost.py [COUNT [SIDE...]]   # sides: ours, service, stock
    python bench/login_cost.py --trace [SIDE...]   # the server's work, counted
    python bench/login_cost.py --parts [SIDE...]   # the same, by part
    python bench/login_cost.py --cachegrind [COUNT [SIDE...]]  # both ends, simulated

C{COUNT} is the logins per batch, 160 by default.  C{ours} is P1's
embedded configuration (see L{bench._pbpeer}: a L{Bouncer} on a
L{MemoryStore} with tokens, L{KeycardRoot}, L{KeycardServerFactory}, the
default limits) and the default client (C{KeycardClientFactory.login},
with its defaults).  C{service} is the bouncer service's store and
throttle on it: an L{SQLiteStore} (WAL) whose work runs inline, in the
server's time, not in its thread (each write a transaction of its own: no
group commit), and C{Throttle()}, the service's default.  Both sides talk
over an in-memory
transport (L{twisted.test.iosim}), so there are no sockets and no reactor:
what is left is the code of the two brokers and of the login.  As in P1's
persistent layout, a connection carries L{PER_CONNECTION} logins (the
keycards one connection may hold by default), then closes, and a new one
is made, for both sides alike.  The server's part is the time spent in its
broker's C{dataReceived} and C{connectionLost} (which releases the
connection's keycards); the client's part is the rest (its own broker and
login code, connection set-up, and the in-memory transport, which costs the
same for both).  With C{--trace}, the server's part is counted instead of
timed, with C{sys.settrace}: its Python opcodes, calls, and distinct
functions per login; with C{--parts}, the same split by the part of
the login the code belongs to (L{PARTS}: the PB wire, Deferreds, SCRAM,
the bouncer's steps...), code that attrs, dataclasses or Automat generate
counted with its caller's part.  Times are the thread's CPU time (C{time.thread_time}),
not the wall clock, so that other processes on the machine do not count.
The sides run in turn, in interleaved batches; each figure is the
median of the batches.

With C{--cachegrind}, each side runs under C{valgrind --tool=cachegrind}
with its cache and branch simulation, twice: with no timed logins and
with C{COUNT} (320 by default), both ends of the login; the difference,
per login, is printed: instructions, first-level data-cache read misses,
and mispredicted conditional and indirect branches.  These counts do not
depend on the machine's load, and they tell why a login that runs about
as many instructions as another can take much longer.
"""

from __future__ import annotations

import statistics
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
        elif side == "ours":
            self.server = embeddedFactory(Clock(), {})
        else:
            raise SystemExit(f"unknown side {side!r}: ours, service or stock")
        self.caches = {user(i)[0]: SCRAMKeyCache() for i in range(USERS)}
        self.inServer = 0.0
        #: Set by L{trace}: the server's part runs under it.
        self.tracer: Any = None

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
                if self.tracer is not None:
                    sys.settrace(self.tracer)
                start = time.thread_time()
                try:
                    return method(*args)
                finally:
                    self.inServer += time.thread_time() - start
                    sys.settrace(None)

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


def measure(
    count: int, sides: list[str], batches: int = 21
) -> dict[str, tuple[float, float]]:
    """
    The sides in turn, in C{batches} interleaved batches of C{count}
    logins each, so that a machine busy with something else weighs on
    all alike.

    @return: for each side, the median microseconds per login on the
        server side and in all.
    """
    runners = {side: Side(side) for side in sides}

    def logins(runner: Side, total: int) -> None:
        for first in range(0, total, PER_CONNECTION):
            runner.logins(first, min(PER_CONNECTION, total - first))

    for runner in runners.values():
        logins(runner, 3 * USERS)
    seen: dict[str, list[tuple[float, float]]] = {side: [] for side in runners}
    for _ in range(batches):
        for side, runner in runners.items():
            runner.inServer = 0.0
            start = time.thread_time()
            logins(runner, count)
            total = time.thread_time() - start
            seen[side].append((runner.inServer / count, total / count))
    return {
        side: (
            statistics.median(s for s, _ in found) * 1e6,
            statistics.median(t for _, t in found) * 1e6,
        )
        for side, found in seen.items()
    }


#: The parts of a login's server work, by the first of their paths found
#: in a function's file (in this order).
PARTS = [
    (
        "PB wire",
        ("twisted_keycard/pb/_broker", "twisted/spread/", "twisted/python/compat"),
    ),
    ("Deferreds, coroutines", ("twisted/internet/defer", "asyncio/coroutines")),
    ("SCRAM", ("twisted_keycard/scram/", "/hmac.py")),
    ("bouncer steps", ("twisted_keycard/bouncer/", "twisted_keycard/_")),
    ("root, connection", ("twisted_keycard/pb/",)),
    ("keycard", ("twisted_keycard/keycard/",)),
    ("store record", ("twisted_keycard/store/",)),
    ("log line", ("twisted/logger/", "constantly/")),
    ("Automat", ("automat/",)),
    ("attrs", ("attr/",)),
    ("random", ("/random.py",)),
    ("portal, realm", ("twisted/cred/", "bench/")),
    ("clock, transport", ("twisted/internet/", "twisted/test/iosim")),
]


def partOf(frame: Any) -> str:
    """
    The part of the login (L{PARTS}) the code of C{frame} belongs to;
    generated code (its file named in angle brackets) belongs to its
    caller's part.
    """
    while frame.f_code.co_filename.startswith("<") and frame.f_back is not None:
        frame = frame.f_back
    filename = frame.f_code.co_filename
    for part, paths in PARTS:
        if any(path in filename for path in paths):
            return part
    return "other"


def trace(
    sides: list[str], count: int = 160, parts: bool = False
) -> dict[str, dict[str, tuple[float, float, int]]]:
    """
    Count the server's work: after the same untimed logins as L{measure},
    C{count} logins run with the server's part traced.

    @param parts: whether to count each part of the login (L{partOf}) on
        its own, or all of it as one part, C{"all"}.
    @return: for each side and part, the Python opcodes and calls per
        login, and the distinct Python functions the server ran.
    """
    result = {}
    for side in sides:
        runner = Side(side)
        for first in range(0, 3 * USERS, PER_CONNECTION):
            runner.logins(first, PER_CONNECTION)
        opcodes: dict[str, int] = {}
        calls: dict[str, int] = {}
        functions: dict[str, set[Any]] = {}

        def tracer(
            frame: Any,
            event: str,
            arg: object,
            opcodes: dict[str, int] = opcodes,
            calls: dict[str, int] = calls,
            functions: dict[str, set[Any]] = functions,
        ) -> Any:
            part = partOf(frame) if parts else "all"
            if event == "opcode":
                opcodes[part] = opcodes.get(part, 0) + 1
            elif event == "call":
                calls[part] = calls.get(part, 0) + 1
                functions.setdefault(part, set()).add(frame.f_code)
                frame.f_trace_opcodes = True
            return tracer

        runner.tracer = tracer
        for first in range(0, count, PER_CONNECTION):
            runner.logins(first, min(PER_CONNECTION, count - first))
        result[side] = {
            part: (
                opcodes.get(part, 0) / count,
                calls.get(part, 0) / count,
                len(functions.get(part, ())),
            )
            for part in opcodes.keys() | calls.keys()
        }
    return result


#: Cachegrind's events, and the ones printed, with their headings.
CACHEGRIND_EVENTS = {
    "Ir": "instr",
    "D1mr": "D1 rd miss",
    "Bcm": "br miss",
    "Bim": "ind miss",
}


def cachegrindChild(side: str, count: int) -> None:
    """
    In a child under cachegrind: the untimed logins, then C{count} more.
    """
    runner = Side(side)
    for first in range(0, 3 * USERS, PER_CONNECTION):
        runner.logins(first, PER_CONNECTION)
    for first in range(0, count, PER_CONNECTION):
        runner.logins(first, min(PER_CONNECTION, count - first))


def cachegrind(count: int, sides: list[str]) -> dict[str, dict[str, float]]:
    """
    Simulated counts per login of both ends, for each side (see the
    module's docstring).
    """
    import subprocess

    def counted(side: str, logins: int, out: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                "valgrind",
                "--tool=cachegrind",
                "--cache-sim=yes",
                "--branch-sim=yes",
                f"--cachegrind-out-file={out}",
                sys.executable,
                __file__,
                "--cachegrind-child",
                side,
                str(logins),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def summary(out: str) -> dict[str, int]:
        events: list[str] = []
        totals: list[int] = []
        for line in Path(out).read_text().splitlines():
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("summary:"):
                totals = [int(n) for n in line.split()[1:]]
        return dict(zip(events, totals, strict=True))

    result = {}
    with tempfile.TemporaryDirectory(prefix="keycard-cachegrind-") as tmp:
        runs = {
            (side, n): (counted(side, n, f"{tmp}/{side}-{n}"), f"{tmp}/{side}-{n}")
            for side in sides
            for n in (0, count)
        }
        for (side, n), (process, _) in runs.items():
            if process.wait() != 0:
                raise SystemExit(f"cachegrind failed for {side} ({n} logins)")
        for side in sides:
            empty = summary(runs[side, 0][1])
            full = summary(runs[side, count][1])
            result[side] = {
                event: (full[event] - empty[event]) / count
                for event in CACHEGRIND_EVENTS
            }
    return result


def main(argv: list[str]) -> None:
    if argv[:1] == ["--cachegrind-child"]:
        cachegrindChild(argv[1], int(argv[2]))
        return
    if argv[:1] == ["--cachegrind"]:
        count = int(argv[1]) if argv[1:] else 320
        sides = argv[2:] or ["ours", "stock"]
        print(f"{'side':<8}" + "".join(f"{h:>12}" for h in CACHEGRIND_EVENTS.values()))
        counts = cachegrind(count, sides)
        for side, found in counts.items():
            print(f"{side:<8}" + "".join(f"{found[e]:>12.0f}" for e in found))
        if "stock" in counts:
            for side, found in counts.items():
                if side != "stock":
                    ratios = [found[e] / counts["stock"][e] for e in found]
                    print(
                        f"{side + '/stock':<8}" + "".join(f"{r:>12.2f}" for r in ratios)
                    )
        return
    if argv[:1] == ["--trace"]:
        sides = argv[1:] or ["ours", "stock"]
        print(f"{'side':<8} {'opcodes':>10} {'calls':>8} {'functions':>10}")
        for side, whole in trace(sides).items():
            opcodes, calls, functions = whole["all"]
            print(f"{side:<8} {opcodes:>10.0f} {calls:>8.0f} {functions:>10}")
        return
    if argv[:1] == ["--parts"]:
        sides = argv[1:] or ["ours", "stock"]
        counted = trace(sides, parts=True)
        print(f"{'part':<22}" + "".join(f"{s + ' op/call/fn':>24}" for s in sides))
        order = sorted(
            {name for byPart in counted.values() for name in byPart},
            key=lambda name: -counted[sides[0]].get(name, (0.0, 0.0, 0))[0],
        )
        for part in [*order, "all"]:
            row = f"{part:<22}"
            for side in sides:
                if part == "all":
                    every = counted[side].values()
                    opcodes = sum(c[0] for c in every)
                    calls = sum(c[1] for c in every)
                    # Generated code counts in each part that calls it.
                    functions = sum(c[2] for c in every)
                else:
                    opcodes, calls, functions = counted[side].get(part, (0, 0, 0))
                row += f"{f'{opcodes:.0f} / {calls:.0f} / {functions}':>24}"
            print(row)
        return
    count = int(argv[0]) if argv else 160
    sides = argv[1:] or ["ours", "stock"]
    print(f"{'side':<8} {'server us':>10} {'client us':>10} {'total us':>10}")
    for side, (server, total) in measure(count, sides).items():
        print(f"{side:<8} {server:>10.0f} {total - server:>10.0f} {total:>10.0f}")


if __name__ == "__main__":
    main(sys.argv[1:])
