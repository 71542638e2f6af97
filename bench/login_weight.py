"""
P7: the weight of one login, ours beside Twisted's stock PB login, both
sides in one process wired in memory (L{twisted.test.iosim}), as
L{twisted_keycard.testing} runs them: no sockets, no reactor, so what is
counted is the code and the bytes of the two brokers and of the login.

Ours is C{KeycardTestServer.build([SCRAMVerifiers], realm,
store=MemoryStore(), tokens=...)} (tokens off, the testing default, and
C{TokenPolicy()}), reached by C{KeycardTestServer.connect()} and logged in
to with the default client, C{KeycardClientFactory.login([SCRAMAnswerer(name,
password, cache=SCRAMKeyCache())])}.  Stock is C{pb.PBServerFactory(Portal(realm,
[InMemoryUsernamePasswordDatabaseDontUse]))} and
C{pb.PBClientFactory().login(UsernamePassword(...))}, connected with
L{iosim.connect} and a L{Clock} the same way.  Every user logs in once,
untimed, on a connection of its own first (so the SCRAM key cache is warm,
as a long-running client's is; stock alike).

 - Python calls per login: C{call} events seen by C{sys.setprofile} from
   the C{login()} call until the pump is quiet (both brokers, the login
   code of both sides and the in-memory transport), on a connection that
   has logged in before; the median over the logins of a connection,
   pooled over several fresh processes (see L{PROCESSES}).
 - Modules per login: the distinct source files of C{twisted_keycard}
   whose code runs during those logins (attrs-made methods count as the
   module of their class); stock's are those of C{twisted.spread} and
   C{twisted.cred}.
 - Bytes per login each way: counted on the transports' writes, on a
   connection that has logged in before, and on a new connection (from its
   making, version exchange included, until the login is done).
 - PB round trips per login: the requests either broker sends that wait
   for an answer (PB C{message}s with an answer required), counted at the
   brokers' C{sendCall}.

Each login's result is held until the connection's logins are done (as a
client holds its perspective), and the garbage collector is off while they
run, so that no collection moves calls or C{decref} messages from one
login to another.

    python -m bench.login_weight [--quick]   # the table of P7 alone
    python -m bench.login_weight child       # one process's logins, as JSON
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import twisted.cred
import twisted.spread
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.credentials import UsernamePassword
from twisted.cred.portal import Portal
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.spread import pb
from twisted.test.iosim import FakeTransport, connect

import twisted_keycard
from twisted_keycard import MemoryStore
from twisted_keycard.bouncer import TokenPolicy
from twisted_keycard.scram import SCRAMAnswerer, SCRAMKeyCache, SCRAMVerifiers, Verifier
from twisted_keycard.testing import KeycardTestServer

from ._common import Figure, figure, inChild
from ._pbpeer import Realm

#: Users logged in to, in turn.
USERS = 8

#: Logins measured on one connection: under the 16 keycards a connection
#: may hold by default, with the one untimed login each connection starts
#: with.
PER_CONNECTION = 9

#: Fresh processes the logins are pooled over: a login's calls vary a
#: little from one process to another (Automat's transition table is keyed
#: by objects hashed by address; stock's challenge has a random length),
#: never within one.
PROCESSES = 7

#: Goals.
MAX_CALLS_RATIO = 1.2
MAX_MODULES = 15
MAX_BYTES_RATIO = 2.0

SERVER = IPv4Address("TCP", "127.0.0.1", 8800)
CLIENT = IPv4Address("TCP", "127.0.0.1", 40000)

TOKENS: dict[str, TokenPolicy | None] = {
    "tokens off": None,
    "tokens on": TokenPolicy(),
}

NOTES = [
    "P7 configuration: one SCRAM-SHA-256 login, client and server in one"
    " process over twisted.test.iosim (KeycardTestServer.build([SCRAMVerifiers],"
    " realm, store=MemoryStore(), tokens=None or TokenPolicy()), its connect(),"
    " KeycardClientFactory.login([SCRAMAnswerer(name, password,"
    " cache=SCRAMKeyCache())]), each user logged in once untimed first;"
    " login() asks for no token, so 'tokens on' signs none);"
    " peer: PBServerFactory(Portal(realm, [InMemoryUsernamePasswordDatabaseDontUse])),"
    " PBClientFactory.login(UsernamePassword), over iosim alike; calls are"
    " sys.setprofile 'call' events from login() until the pump is quiet, both"
    " sides and the transport; bytes are the transports' writes; round trips"
    " the PB messages either side sends that want an answer",
    f"  goals: calls <= {MAX_CALLS_RATIO:g}x stock; <= {MAX_MODULES} project"
    f" modules per login; bytes <= {MAX_BYTES_RATIO:g}x stock each way",
]


def user(i: int) -> tuple[str, str]:
    return f"user{i % USERS}", f"password {i % USERS}"


def userBytes(i: int) -> tuple[bytes, bytes]:
    name, password = user(i)
    return name.encode(), password.encode()


class Connection:
    """
    One in-memory connection: the client factory, the pump, both brokers.
    """

    def __init__(self, factory: Any, pump: Any, server: Any, client: Any) -> None:
        self.factory = factory
        self.pump = pump
        self.brokers = (server, client)


class Ours:
    """
    Our side: a L{KeycardTestServer} with SCRAM verifiers, and the default
    client.
    """

    def __init__(self, tokens: TokenPolicy | None) -> None:
        verifiers = SCRAMVerifiers(
            {user(i)[0]: Verifier.fromPassword(user(i)[1]) for i in range(USERS)}
        )
        self.server = KeycardTestServer.build(
            [verifiers], Realm(), store=MemoryStore(), tokens=tokens
        )
        self.caches = {user(i)[0]: SCRAMKeyCache() for i in range(USERS)}

    def connect(self) -> Connection:
        c = self.server.connect()
        return Connection(c.factory, c.pump, c.serverBroker, c.clientBroker)

    def login(self, connection: Connection, i: int) -> Any:
        name, password = user(i)
        answerer = SCRAMAnswerer(name, password, cache=self.caches[name])
        return connection.factory.login([answerer])


class Stock:
    """
    Twisted's stock PB login, wired as L{KeycardTestServer.connect} wires
    ours.
    """

    def __init__(self) -> None:
        checker = InMemoryUsernamePasswordDatabaseDontUse(
            **{user(i)[0]: user(i)[1].encode() for i in range(USERS)}
        )
        self.server = pb.PBServerFactory(Portal(Realm(), [checker]))
        self.clock = Clock()

    def connect(self) -> Connection:
        serverBroker = self.server.buildProtocol(CLIENT)
        factory = pb.PBClientFactory()
        clientBroker = factory.buildProtocol(SERVER)
        pump = connect(
            serverBroker,
            FakeTransport(serverBroker, True, SERVER, CLIENT),
            clientBroker,
            FakeTransport(clientBroker, False, CLIENT, SERVER),
            clock=self.clock,
        )
        return Connection(factory, pump, serverBroker, clientBroker)

    def login(self, connection: Connection, i: int) -> Any:
        return connection.factory.login(UsernamePassword(*userBytes(i)))


Side = Ours | Stock


def finish(d: Any, held: list[object]) -> None:
    """
    Check that a pumped login succeeded, and hold its perspective.
    """
    results: list[object] = []
    d.addBoth(results.append)
    if not (results and isinstance(results[0], pb.RemoteReference)):
        raise RuntimeError(f"a login failed: {results}")
    held.append(results[0])


def close(connection: Connection) -> None:
    connection.factory.disconnect()
    connection.pump.flush()


def warm(side: Side) -> None:
    """
    Log every user in once, on a connection of its own.
    """
    connection = side.connect()
    held: list[object] = []
    for i in range(USERS):
        d = side.login(connection, i)
        connection.pump.flush()
        finish(d, held)
    close(connection)


#: The directories whose modules are counted: ours, and stock's.
PACKAGE = Path(twisted_keycard.__file__).resolve().parent
STOCK_DIRS = {
    "twisted.spread": Path(twisted.spread.__file__).resolve().parent,
    "twisted.cred": Path(twisted.cred.__file__).resolve().parent,
}


class ModuleOf:
    """
    The module a code object's file belongs to, among C{twisted_keycard},
    C{twisted.spread} and C{twisted.cred}; C{None} for any other.
    """

    def __init__(self) -> None:
        self.known: dict[str, str | None] = {}

    def __call__(self, filename: str) -> str | None:
        try:
            return self.known[filename]
        except KeyError:
            found = self.known[filename] = self._find(filename)
            return found

    def _find(self, filename: str) -> str | None:
        if filename.startswith("<attrs generated"):
            # "<attrs generated methods twisted_keycard.x.y.Class>": the
            # longest prefix of the qualified class name that is a module.
            qualified = filename.rstrip(">").split()[-1]
            parts = qualified.split(".")
            for n in range(len(parts) - 1, 0, -1):
                name = ".".join(parts[:n])
                if name in sys.modules:
                    return self._counted(name)
            return None
        if filename.startswith("<"):
            return None
        path = Path(filename).resolve()
        for package, directory in [
            ("twisted_keycard", PACKAGE),
            *STOCK_DIRS.items(),
        ]:
            if path.is_relative_to(directory):
                parts = list(path.relative_to(directory).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts.pop()
                return ".".join([package, *parts])
        return None

    @staticmethod
    def _counted(name: str) -> str | None:
        for package in ("twisted_keycard", *STOCK_DIRS):
            if name == package or name.startswith(package + "."):
                return name
        return None


class Profile:
    """
    C{call} events, in all and by counted module, while installed.
    """

    def __init__(self, moduleOf: ModuleOf) -> None:
        self.moduleOf = moduleOf
        self.calls = 0
        self.byModule: Counter[str] = Counter()

    def __call__(self, frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            self.calls += 1
            module = self.moduleOf(frame.f_code.co_filename)
            if module is not None:
                self.byModule[module] += 1


@contextmanager
def noCollection() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def profiled(side: Side, moduleOf: ModuleOf) -> list[Profile]:
    """
    The profile of each of L{PER_CONNECTION} logins on one connection,
    after one untimed login on it.
    """
    profiles = []
    connection = side.connect()
    held: list[object] = []
    with noCollection():
        for i in range(PER_CONNECTION + 1):
            profile = Profile(moduleOf)
            sys.setprofile(profile)
            try:
                d = side.login(connection, i)
                connection.pump.flush()
            finally:
                sys.setprofile(None)
            finish(d, held)
            if i:
                profiles.append(profile)
        close(connection)
    return profiles


class Wire:
    """
    Bytes written by each side's transport, and PB requests sent that want
    an answer, while counting.
    """

    def __init__(self) -> None:
        self.toServer = 0
        self.toClient = 0
        self.requests = 0

    @contextmanager
    def counting(self, connection: Connection | None = None) -> Iterator[None]:
        """
        Count every in-memory transport's writes, and the requests of
        C{connection}'s brokers (of a connection made inside, see
        L{watch}).
        """
        original = FakeTransport.write

        def write(transport: FakeTransport, data: bytes) -> None:
            if transport.isServer:
                self.toClient += len(data)
            else:
                self.toServer += len(data)
            original(transport, data)

        FakeTransport.write = write  # type: ignore[method-assign]
        undo = self.watch(connection) if connection is not None else []
        try:
            yield
        finally:
            FakeTransport.write = original  # type: ignore[method-assign]
            for fn in undo:
                fn()

    def watch(self, connection: Connection) -> list[Callable[[], None]]:
        """
        Count the requests both of C{connection}'s brokers send.

        @return: what undoes it.
        """
        undo = []
        for broker in connection.brokers:
            send = broker.sendCall

            def sendCall(*exp: Any, send: Any = send) -> None:
                # ("message" | "cachemessage", requestID, objectID, name,
                #  answerRequired, args, kwargs)
                if exp and exp[0] in (b"message", b"cachemessage") and exp[4]:
                    self.requests += 1
                send(*exp)

            broker.sendCall = sendCall
            undo.append(lambda broker=broker: vars(broker).pop("sendCall", None))
        return undo


def persistentWire(side: Side) -> list[Wire]:
    """
    The bytes and requests of each of L{PER_CONNECTION} logins on one
    connection, after one untimed login on it.
    """
    wires = []
    connection = side.connect()
    held: list[object] = []
    with noCollection():
        d = side.login(connection, 0)
        connection.pump.flush()
        finish(d, held)
        for i in range(1, PER_CONNECTION + 1):
            wire = Wire()
            with wire.counting(connection):
                d = side.login(connection, i)
                connection.pump.flush()
            finish(d, held)
            wires.append(wire)
        close(connection)
    return wires


def newWire(side: Side, count: int) -> list[Wire]:
    """
    The bytes and requests of C{count} logins, each on a new connection,
    counted from the connection's making.
    """
    wires = []
    with noCollection():
        for i in range(count):
            wire = Wire()
            held: list[object] = []
            with wire.counting():
                connection = side.connect()
                undo = wire.watch(connection)
                d = side.login(connection, i)
                connection.pump.flush()
            for fn in undo:
                fn()
            finish(d, held)
            close(connection)
            wires.append(wire)
    return wires


def measure(side: Side, moduleOf: ModuleOf) -> dict[str, Any]:
    """
    One side's logins, as JSON: per login, its calls, its calls by counted
    module, and the bytes and requests of persistent and new connections.
    """
    warm(side)
    profiles = profiled(side, moduleOf)
    wires = {"persistent": persistentWire(side), "new": newWire(side, PER_CONNECTION)}
    result: dict[str, Any] = {
        "calls": [p.calls for p in profiles],
        "byModule": [dict(p.byModule) for p in profiles],
    }
    for layout, done in wires.items():
        result[layout] = {
            key: [getattr(w, key) for w in done]
            for key in ("toServer", "toClient", "requests")
        }
    return result


def child() -> None:
    """
    Measure every side in this process; print one JSON line.
    """
    moduleOf = ModuleOf()
    results = {"stock": measure(Stock(), moduleOf)}
    for label, tokens in TOKENS.items():
        results[label] = measure(Ours(tokens), moduleOf)
    print(json.dumps(results))


def pooled(children: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """
    The logins of every child process, side by side.
    """
    result: dict[str, dict[str, Any]] = {}
    for side in children[0]:
        each = [c[side] for c in children]
        result[side] = {
            "calls": [v for c in each for v in c["calls"]],
            "byModule": [v for c in each for v in c["byModule"]],
            **{
                layout: {
                    key: [v for c in each for v in c[layout][key]]
                    for key in each[0][layout]
                }
                for layout in ("persistent", "new")
            },
        }
    return result


def modulesOf(byModule: dict[str, int], packages: tuple[str, ...]) -> list[str]:
    return sorted(
        m for m in byModule if any(m == p or m.startswith(p + ".") for p in packages)
    )


def moduleNote(
    label: str, byModule: list[dict[str, int]], packages: tuple[str, ...]
) -> str:
    """
    The modules one login enters, with their calls per login (medians).
    """
    names = sorted({m for login in byModule for m in modulesOf(login, packages)})
    items = [
        f"{name} {statistics.median(login.get(name, 0) for login in byModule):g}"
        for name in names
    ]
    return f"  {label}: {len(names)} modules (calls per login): {', '.join(items)}"


def figures(results: dict[str, dict[str, Any]]) -> list[Figure]:
    stock = results["stock"]
    result = []
    for label in TOKENS:
        ours = results[label]
        tag = f"SCRAM in memory, {label}"
        calls = figure(
            "P7",
            f"{tag}: Python calls/login, persistent conn",
            ours["calls"],
            stock["calls"],
            "calls",
            False,
        )
        result.append(
            calls.held(
                f"<= {MAX_CALLS_RATIO:g}x stock",
                calls.peer is not None and calls.ours <= MAX_CALLS_RATIO * calls.peer,
            )
        )
        modules = figure(
            "P7",
            f"{tag}: twisted_keycard modules/login (stock: twisted.spread+cred)",
            [len(modulesOf(m, ("twisted_keycard",))) for m in ours["byModule"]],
            [len(modulesOf(m, tuple(STOCK_DIRS))) for m in stock["byModule"]],
            "modules",
            False,
        )
        result.append(modules.held(f"<= {MAX_MODULES}", modules.ours <= MAX_MODULES))
        for layout, layoutName in (
            ("persistent", "persistent conn"),
            ("new", "new conn, version exchange included"),
        ):
            for way, wayName in (
                ("toServer", "client to server"),
                ("toClient", "server to client"),
            ):
                f = figure(
                    "P7",
                    f"{tag}: bytes/login {wayName}, {layoutName}",
                    ours[layout][way],
                    stock[layout][way],
                    "bytes",
                    False,
                )
                result.append(
                    f.held(
                        f"<= {MAX_BYTES_RATIO:g}x stock",
                        f.peer is not None and f.ours <= MAX_BYTES_RATIO * f.peer,
                    )
                )
        result.append(
            figure(
                "P7",
                f"{tag}: PB round trips/login, persistent and new conn",
                ours["persistent"]["requests"] + ours["new"]["requests"],
                stock["persistent"]["requests"] + stock["new"]["requests"],
                "requests",
                False,
            )
        )
    return result


def run(quick: bool) -> list[Figure]:
    processes = 3 if quick else PROCESSES
    results = pooled([inChild("bench.login_weight") for _ in range(processes)])
    NOTES.append(
        f"  P7: {processes} fresh processes, {PER_CONNECTION} logins of each"
        " side per process and layout, pooled (the min and max of ours are"
        " over all of them)"
    )
    for label in TOKENS:
        for name, packages in (
            ("", ("twisted_keycard",)),
            (", of Twisted", tuple(STOCK_DIRS)),
        ):
            NOTES.append(
                moduleNote(
                    f"P7 ours, {label}{name}", results[label]["byModule"], packages
                )
            )
    NOTES.append(
        moduleNote("P7 stock PB", results["stock"]["byModule"], tuple(STOCK_DIRS))
    )
    return figures(results)


if __name__ == "__main__":
    if sys.argv[1:] == ["child"]:
        child()
    else:
        from ._common import HEADER

        done = run("--quick" in sys.argv)
        for note in NOTES:
            print(f"# {note}")
        print(HEADER)
        for f in done:
            print(f.row())
