"""
A license server's queue: one bouncer process with a pool of one seat and
a queue, and three client processes that want the seat.

Run it with::

    python examples/seat_queue.py

It makes a data directory in a temporary directory, starts
C{twistd -n keycard-bouncer --seat-pool licenses --seats 1 --seat-queue 5
--heartbeat 1} on it, then three clients (C{KeycardClientService} with
C{waitForSeat}), each in its own process: the first takes the seat, the
second and third wait in that order and are told their places.  The
bouncer is restarted while they wait: each client comes back with its
queue ticket and keeps its place.  Then the holder's process is frozen
(SIGSTOP, as a frozen host): it answers no heartbeat, the bouncer drops it
after three, and its seat goes to the head of the queue.  Everything is
printed as it happens; it exits 0 once the seat went to the head.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import protocol, task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint

#: The repository: the package, and its twistd plugin, for the children.
ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path[1:]])}
PASSWORD = "correct horse battery"  # noqa: S105 - the example's users
POOL = "licenses"
USERS = ["u1", "u2", "u3"]
#: Seconds to wait for any step, at most.
DEADLINE = 60.0


def keycard(*args: str, stdin: str = "") -> None:
    """
    Run the C{keycard} command, as a user would.
    """
    subprocess.run(  # noqa: S603 - this Python, our arguments
        [sys.executable, "-m", "twisted_keycard.admin", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=ENV,
        check=True,
    )


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lines(protocol.ProcessProtocol):
    """
    A child process whose output lines are printed, prefixed, as they
    come, and kept.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self._partial = b""
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            text = line.decode("utf-8", "replace")
            self.lines.append(text)
            print(f"  [{self.name}] {text}", flush=True)

    errReceived = outReceived

    def processEnded(self, reason: object) -> None:
        self.ended.callback(None)

    def saw(self, text: str, since: int = 0) -> bool:
        return any(text in line for line in self.lines[since:])


async def until(
    reactor: Any, condition: Callable[[], bool], what: str, timeout: float = DEADLINE
) -> None:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"seat_queue.py: timed out waiting for {what}")
        await task.deferLater(reactor, 0.05, lambda: None)


class Demo:
    def __init__(self, reactor: Any, directory: Path) -> None:
        self.reactor = reactor
        self.data = directory / "data"
        self.port = freePort()
        self.bouncerLog = directory / "bouncer.log"
        self.bouncer: Any = None
        self.clients: dict[str, tuple[Lines, Any]] = {}

    async def startBouncer(self) -> None:
        args = [
            sys.executable,
            "-c",
            "from twisted.scripts.twistd import run; run()",
            "-n",
            "--pidfile=",
            "keycard-bouncer",
            "--data-dir",
            str(self.data),
            "--listen",
            f"tcp:{self.port}:interface=127.0.0.1",
            "--seat-pool",
            POOL,
            "--seats",
            "1",
            "--seat-queue",
            "5",
            "--seat-queue-grace",
            "30",
            "--heartbeat",
            "1",
        ]
        with open(self.bouncerLog, "ab") as log:
            self.bouncer = subprocess.Popen(  # noqa: S603 - as in keycard
                args, stdout=log, stderr=subprocess.STDOUT, env=ENV
            )

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                return False
            return True

        await until(self.reactor, listening, "the bouncer to listen")

    def stopBouncer(self) -> None:
        if self.bouncer is not None and self.bouncer.poll() is None:
            self.bouncer.terminate()
            self.bouncer.wait(DEADLINE)

    def startClient(self, user: str) -> Lines:
        lines = Lines(user)
        process = self.reactor.spawnProcess(
            lines,
            sys.executable,
            [sys.executable, __file__, "client", str(self.port), user],
            env=ENV,
        )
        process.write(PASSWORD.encode("utf-8") + b"\n")
        process.closeStdin()
        self.clients[user] = (lines, process)
        return lines

    def stopClients(self) -> None:
        for _, process in self.clients.values():
            if process.pid is not None:
                os.kill(process.pid, signal.SIGCONT)
                process.signalProcess("KILL")


async def demo(reactor: Any) -> None:
    directory = Path(tempfile.mkdtemp(prefix="seat-queue-"))
    print(f"data directory {directory / 'data'} (removed at the end), users", end=" ")
    print(", ".join(USERS))
    keycard("init", str(directory / "data"))
    for user in USERS:
        keycard(
            "user", "add", "--data-dir", str(directory / "data"), user, stdin=PASSWORD
        )
    run = Demo(reactor, directory)
    try:
        await run.startBouncer()
        print(f"bouncer up on port {run.port}: pool {POOL!r} of 1 seat, a queue of 5")
        u1 = run.startClient("u1")
        await until(reactor, lambda: u1.saw("seated"), "u1 to take the seat")
        u2 = run.startClient("u2")
        await until(reactor, lambda: u2.saw("place 1 of 1"), "u2 to be queued")
        u3 = run.startClient("u3")
        await until(reactor, lambda: u3.saw("place 2 of 2"), "u3 to be queued")

        print("restarting the bouncer while u2 and u3 wait")
        marks = {name: len(lines.lines) for name, (lines, _) in run.clients.items()}
        run.stopBouncer()
        await run.startBouncer()
        print("bouncer back: the clients reconnect, u2 and u3 with their tickets")
        await until(
            reactor,
            lambda: u2.saw("seated", marks["u2"]),
            "u2, the head of the queue, to take the freed seat",
        )
        await until(
            reactor,
            lambda: u3.saw("place 1 of", marks["u3"]),
            "u3 to keep its place, now the head",
        )

        print("freezing u2, the holder (SIGSTOP): it answers no more heartbeats")
        _, holder = run.clients["u2"]
        os.kill(holder.pid, signal.SIGSTOP)
        frozen = time.monotonic()
        mark = len(u3.lines)
        await until(reactor, lambda: u3.saw("seated", mark), "u3 to get the seat")
        took = time.monotonic() - frozen
        dropped = [
            line
            for line in run.bouncerLog.read_text().splitlines()
            if "no answer to 3 heartbeats" in line
        ]
        print(f"bouncer: {dropped[-1].split('] ', 1)[-1] if dropped else '?'}")
        print(f"the frozen holder's seat went to u3, the head, after {took:.1f} s")
        await until(
            reactor,
            lambda: u1.saw("place 1 of 1", marks["u1"]),
            "u1, queued behind them since the restart, to be the head",
        )
        print("done: the order was kept across the restart and the freeze")
    finally:
        run.stopClients()
        run.stopBouncer()
        shutil.rmtree(directory, ignore_errors=True)


def client(port: int, user: str) -> None:
    """
    One client: a service that stays logged in, waiting for a seat when
    the pool is full, and prints what happens.
    """
    from twisted.internet import reactor

    from twisted_keycard.pb import KeycardClientService, reconnectPolicy
    from twisted_keycard.scram import SCRAMAnswerer

    password = sys.stdin.readline().strip()

    def seated(login: Any) -> None:
        print(f"seated (keycard {login.keycard.id})", flush=True)
        login.perspective.notifyOnDisconnect(
            lambda _: print("connection lost", flush=True)
        )

    def place(place: int, waiting: int) -> None:
        print(
            f"waiting for a seat in pool {POOL!r}: place {place} of {waiting}",
            flush=True,
        )

    service = KeycardClientService(
        TCP4ClientEndpoint(reactor, "127.0.0.1", port),
        [SCRAMAnswerer(user, password)],
        onLogin=seated,
        retryPolicy=reconnectPolicy(maxDelay=1.0),
        waitForSeat=3600.0,
        onPlace=place,
    )
    service.startService()  # type: ignore[no-untyped-call]
    reactor.run()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role")
    one = roles.add_parser("client", help="run one client (started by the demo)")
    one.add_argument("port", type=int)
    one.add_argument("user")
    args = parser.parse_args()
    if args.role == "client":
        client(args.port, args.user)
        return
    task.react(lambda reactor: Deferred.fromCoroutine(demo(reactor)), [])


if __name__ == "__main__":
    main()
    sys.exit(0)
