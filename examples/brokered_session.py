"""
A client and a service that have never met, introduced by the bouncer:
each ends up knowing the other's name as the bouncer vouches for it, and
every message between them is sealed with the session's key.

Run it with::

    python examples/brokered_session.py

It makes a data directory with a development certificate, then runs three
processes over real TCP on loopback: the bouncer service (``twistd
keycard-bouncer``, over TLS, with ``--services chat``), the service
``chat`` (plain TCP: its sessions are sealed, not encrypted) and the client
``alice``, and prints what each says of the other.  Each part also runs
alone, with its password on standard input::

    python examples/brokered_session.py service BOUNCER PORT NAME
    python examples/brokered_session.py client BOUNCER SERVICE NAME SERVICE_NAME

where BOUNCER and SERVICE are client endpoints, e.g.
``tls:localhost:8800:trustRoots=keycard-data/tls/trust`` and
``tcp:127.0.0.1:8900``.
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

from twisted.cred.portal import IRealm
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.spread import pb
from zope.interface import implementer

from twisted_keycard import KeycardClientFactory
from twisted_keycard.scram import SCRAMAnswerer
from twisted_keycard.sessions import (
    RemoteTicketRedeemer,
    SessionRoot,
    SessionServerFactory,
    connectSession,
)

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    ),
}
PASSWORDS = {"alice": "alice's password", "chat": "the chat service's password"}
TIMEOUT = 30.0


class Chatter(pb.Avatar):
    """
    What the service gives a client: its name, as the bouncer vouched.
    """

    def __init__(self, service: str, client: str) -> None:
        self.service = service
        self.client = client

    def perspective_hello(self) -> str:
        return f"hello {self.client}, this is {self.service}"

    def perspective_whoami(self) -> str:
        return self.client


@implementer(IRealm)
class ChatRealm:
    def __init__(self, name: str) -> None:
        self.name = name

    def requestAvatar(
        self, avatarId: Any, mind: object, *interfaces: Any
    ) -> tuple[Any, Chatter, Callable[[], None]]:
        say(f"service {self.name}: the bouncer vouches for client {avatarId}")

        def logout() -> None:
            say(f"service {self.name}: the session of {avatarId} ended")

        return pb.IPerspective, Chatter(self.name, avatarId), logout


def say(line: str) -> None:
    print(line, flush=True)


async def service(reactor: Any, bouncer: str, port: str, name: str) -> None:
    """
    The service: log in to the bouncer as C{name}, then take sessions.
    """
    password = sys.stdin.readline().rstrip("\n")
    link = RemoteTicketRedeemer(
        clientFromString(reactor, bouncer),
        [SCRAMAnswerer(name, password)],
        clock=reactor,
    )
    root = SessionRoot(link, ChatRealm(name), clock=reactor)
    link.startService()
    await link.whenConnected()
    endpoint = serverFromString(reactor, f"tcp:{port}:interface=127.0.0.1")
    await endpoint.listen(SessionServerFactory(root, clock=reactor))
    say(f"service {name}: logged in to the bouncer, listening on {port}")
    await Deferred()  # until killed


async def client(
    reactor: Any, bouncer: str, serviceAt: str, name: str, serviceName: str
) -> None:
    """
    The client: log in to the bouncer as C{name}, then open a session with
    C{serviceName}.
    """
    password = sys.stdin.readline().rstrip("\n")
    factory = KeycardClientFactory()
    await clientFromString(reactor, bouncer).connect(factory)
    login = await factory.loginWithKeycard([SCRAMAnswerer(name, password)])
    say(f"client {name}: logged in to the bouncer")
    endpoint = clientFromString(reactor, serviceAt)
    session = await connectSession(login, endpoint, serviceName)
    say(f"client {name}: the bouncer vouches for service {session.serviceName}")
    hello = await session.perspective.callRemote("hello")
    say(f"client {name}: {serviceName} says {hello!r}")
    whoami = await session.perspective.callRemote("whoami")
    say(f"client {name}: {serviceName} knows me as {whoami!r}")
    ended = session.whenEnded()
    session.end()
    await ended
    factory.disconnect()


# Running the three processes


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(args: list[str], stdin: str = "") -> str:
    done = subprocess.run(  # noqa: S603 - this Python, our arguments
        [sys.executable, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=TIMEOUT,
        check=True,
    )
    return done.stdout


class Part:
    """
    One of the processes, its output in a file.
    """

    def __init__(self, name: str, args: list[str], log: Path, stdin: str) -> None:
        self.name = name
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(  # noqa: S603 - as in run
                [sys.executable, *args],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=ENV,
                text=True,
            )
        assert self.process.stdin is not None
        self.process.stdin.write(stdin + "\n")
        self.process.stdin.close()

    def output(self) -> str:
        return self.log.read_text()

    def waitFor(self, text: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while text not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{self.name} failed:\n{self.output()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="brokered-session-"))
    parts: list[Part] = []
    try:
        data = base / "data"
        admin = ["-m", "twisted_keycard.admin"]
        run([*admin, "init", str(data), "--dev-cert", "localhost"])
        for user, password in PASSWORDS.items():
            run([*admin, "user", "add", "--data-dir", str(data), user], password)
        bouncerPort, servicePort = freePort(), freePort()
        key = data / "tls" / "server.pem"
        bouncer = Part(
            "the bouncer",
            [
                *("-c", "from twisted.scripts.twistd import run; run()"),
                *("-n", "--pidfile=", "keycard-bouncer", "--data-dir", str(data)),
                *(
                    "--listen",
                    f"ssl:{bouncerPort}:interface=127.0.0.1:privateKey={key}",
                ),
                *("--services", "chat"),
            ],
            base / "bouncer.log",
            "",
        )
        parts.append(bouncer)
        bouncer.waitFor(f"starting on {bouncerPort}")
        print(f"bouncer: listening on {bouncerPort} (TLS)")
        toBouncer = f"tls:localhost:{bouncerPort}:trustRoots={data / 'tls' / 'trust'}"
        chat = Part(
            "the service",
            [str(HERE), "service", toBouncer, str(servicePort), "chat"],
            base / "service.log",
            PASSWORDS["chat"],
        )
        parts.append(chat)
        chat.waitFor("listening on")
        toService = f"tcp:127.0.0.1:{servicePort}"
        alice = Part(
            "the client",
            [str(HERE), "client", toBouncer, toService, "alice", "chat"],
            base / "client.log",
            PASSWORDS["alice"],
        )
        parts.append(alice)
        if alice.process.wait(TIMEOUT) != 0:
            raise SystemExit(f"the client failed:\n{alice.output()}")
        chat.waitFor("ended")
        for line in bouncer.output().splitlines():
            if "sessions._granter." in line:
                print("bouncer:", line.split("] ", 1)[-1])
        for part in (chat, alice):
            for line in part.output().splitlines():
                if line.startswith(("service ", "client ")):
                    print(line)
    finally:
        for part in reversed(parts):
            part.stop()
        shutil.rmtree(base, ignore_errors=True)


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        usage="%(prog)s [-h] [service ... | client ...]",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parts = parser.add_subparsers(
        dest="part", metavar="PART", help="run one part alone (default: all three)"
    )
    alone = parts.add_parser(
        "service",
        prog=f"{parser.prog} service",
        help="the service: log in to BOUNCER as NAME, take sessions on PORT",
    )
    alone.add_argument("bouncer", metavar="BOUNCER", help="the bouncer's endpoint")
    alone.add_argument("port", metavar="PORT", help="the port to take sessions on")
    alone.add_argument("name", metavar="NAME", help="the service's name")
    alone = parts.add_parser(
        "client",
        prog=f"{parser.prog} client",
        help="the client: log in to BOUNCER as NAME, open a session with"
        " SERVICE_NAME at SERVICE",
    )
    alone.add_argument("bouncer", metavar="BOUNCER", help="the bouncer's endpoint")
    alone.add_argument("serviceAt", metavar="SERVICE", help="the service's endpoint")
    alone.add_argument("name", metavar="NAME", help="the client's name")
    alone.add_argument(
        "serviceName", metavar="SERVICE_NAME", help="the name the service logs in as"
    )
    return parser


if __name__ == "__main__":
    # --help and a mistyped argument stop here, before anything starts.
    args = arguments().parse_args()
    if args.part == "service":
        task.react(
            lambda r: Deferred.fromCoroutine(
                service(r, args.bouncer, args.port, args.name)
            )
        )
    elif args.part == "client":
        task.react(
            lambda r: Deferred.fromCoroutine(
                client(r, args.bouncer, args.serviceAt, args.name, args.serviceName)
            )
        )
    else:
        main()
