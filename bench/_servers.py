"""
The servers P1 and P5 log in to, each its own process: Twisted's stock PB
login, the embedded configuration (see L{bench._pbpeer}), and the bouncer
service as an operator runs it: C{twistd -n keycard-bouncer} on a data
directory made by C{keycard init}, with every default of the plugin (SQLite
store, tokens, throttling) but the limits a configuration names.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

from twisted_keycard.scram import Verifier

from ._common import cpuNs
from ._pbpeer import BACKLOG, FIRST_SOURCE, USERS, addressesFor, user

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
TIMEOUT = 60.0

#: The twistd script beside the running Python, as a user's virtualenv has.
TWISTD = Path(sys.executable).parent / "twistd"

#: Limits a configuration may raise: (section, keyword) to the twistd option.
OPTIONS = {
    ("connection", "maxUnauthenticated"): "--max-unauthenticated",
    ("connection", "maxUnauthenticatedPerAddress"): "--max-unauthenticated-per-address",
    ("exchange", "maxPending"): "--max-pending",
    ("exchange", "maxPendingPerAddress"): "--max-pending-per-address",
}


#: What each side is, in the rows' names.
TAGS = {
    "stock": "stock PB",
    "embedded": "embedded (memory, tokens, no throttle)",
    "service": "service (SQLite, tokens, throttle)",
}


@attrs.frozen
class Config:
    """
    A server configuration, named as the rows print it.

    @ivar side: C{stock}, C{embedded} or C{service}.
    @ivar raised: the limits raised above the defaults, as
        C{{"connection": {...}, "exchange": {...}}}.
    """

    side: str
    raised: dict[str, dict[str, int]] = attrs.field(factory=dict)

    @property
    def tag(self) -> str:
        """
        The configuration in a few words, to begin a row's name.
        """
        return TAGS[self.side]

    def limitsNote(self) -> str:
        """
        The raised limits, in words, or that all limits are the defaults.
        """
        items = [f"{k}={v}" for part in self.raised.values() for k, v in part.items()]
        return ", ".join(items) if items else "default limits"


def keycard(*args: str, stdin: str = "") -> str:
    """
    Run the C{keycard} command as a user would; its output.
    """
    done = subprocess.run(
        [sys.executable, "-m", "twisted_keycard.admin", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=TIMEOUT,
        check=True,
    )
    return done.stdout


def makeDataDir(path: Path) -> None:
    """
    A data directory as an operator makes it: C{keycard init}, the first
    user with C{keycard user add}, the others appended to C{users.scram} as
    the tutorial shows (a C{keycard} process per user would take minutes),
    and C{keycard user list} to check that the service will see them all.
    """
    keycard("init", str(path))
    name, password = user(0)
    keycard("user", "add", "--data-dir", str(path), name, stdin=password + "\n")
    with open(path / "users.scram", "a") as f:
        for i in range(1, USERS):
            name, password = user(i)
            f.write(f"{name}:{Verifier.fromPassword(password).toString()}\n")
    listed = keycard("user", "list", "--data-dir", str(path)).split()
    missing = {user(i)[0] for i in range(USERS)} - set(listed)
    if missing:
        raise RuntimeError(f"keycard user list does not show {sorted(missing)[:3]}")


class Server:
    """
    One running server process: its pid and port.
    """

    #: The module that runs a peer server, and its arguments after the side.
    peer = "bench._pbpeer"

    def __init__(self, config: Config, template: Path | None) -> None:
        self.config = config
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._keepLog = False
        if config.side == "service":
            assert template is not None
            self._startService(template)
        else:
            self._startPeer()

    def _startPeer(self) -> None:
        self.process: subprocess.Popen[str] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                self.peer,
                "server",
                self.config.side,
                *self.peerArguments(),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def peerArguments(self) -> list[str]:
        """
        The peer server's arguments after its side: the raised limits.
        """
        return [json.dumps(self.config.raised)]

    def _startService(self, template: Path) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="keycard-bench-")
        data = Path(self._tmp.name) / "data"
        shutil.copytree(template, data)
        # The service's log goes to a file of its own, never to the
        # benchmark's output; it is kept when something failed.
        fd, name = tempfile.mkstemp(prefix="keycard-bench-twistd-", suffix=".log")
        os.close(fd)
        self.log = Path(name)
        options = [
            f"{OPTIONS[section, name]}={value}"
            for section, part in self.config.raised.items()
            for name, value in part.items()
        ]
        self.process = subprocess.Popen(
            [
                str(TWISTD),
                "-n",
                "--pidfile=",
                f"--logfile={self.log}",
                "keycard-bouncer",
                "--data-dir",
                str(data),
                "--listen",
                f"tcp:0:interface=127.0.0.1:backlog={BACKLOG}",
                *options,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=ENV,
            cwd=ROOT,
        )
        self.port = self._waitForPort()

    def _waitForPort(self) -> int:
        deadline = time.monotonic() + TIMEOUT
        pattern = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
        while time.monotonic() < deadline:
            found = pattern.search(self.log.read_text())
            if found:
                return int(found.group(1))
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        note = self.logNote()
        self.stop()
        raise RuntimeError(f"the bouncer service did not start; {note}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def logNote(self) -> str:
        """
        Where the service's log is, kept past L{stop} from now on; empty
        for a server that is not the service.
        """
        if self._tmp is None:
            return ""
        self._keepLog = True
        return f"the service's log: {self.log}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            if not self._keepLog:
                self.log.unlink(missing_ok=True)


def runClients(
    side: str,
    server: Server,
    concurrency: int,
    mode: str,
    count: int,
    processes: int = 1,
    peer: str = "bench._pbpeer",
    extra: tuple[str, ...] = (),
) -> tuple[list[dict[str, Any]], float]:
    """
    Run client processes (C{ours} or C{stock}) against C{server}: they all
    log in untimed first, then start their timed logins together.  Each
    process's workers connect from loopback addresses of their own (see
    L{bench._pbpeer.sourceAddress}), from 127.0.0.2 on.

    @param peer: the module that runs a client (L{bench._pbpeer}, or
        L{bench._tlspeer}, which takes C{extra} arguments too).

    @return: each process's result, and the server's CPU nanoseconds
        during the timed logins.
    """
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                peer,
                "client",
                side,
                str(server.port),
                str(concurrency),
                mode,
                str(count),
                str(FIRST_SOURCE + process * addressesFor(concurrency)),
                *extra,
                "barrier",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
            cwd=ROOT,
        )
        for process in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError("a client process failed before its timed logins")
        before = cpuNs(server.pid)
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = []
        for child in children:
            assert child.stdout is not None
            results.append(json.loads(child.stdout.readline()))
        cpu = cpuNs(server.pid) - before
        for child in children:
            child.communicate(timeout=TIMEOUT)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return results, cpu
