"""
Real processes for integration tests: the bouncer service under twistd, the
keycard command, and a requester using a remote bouncer.  Every process is
stopped by the test that started it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest

reactor: Any = _reactor
ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
TIMEOUT = 30.0
#: The twistd script of the Python running the tests.
TWISTD = str(Path(sys.executable).parent / "twistd")


def needTool(name: str) -> str:
    """
    The path of a tool the test drives; skip without it, except in CI,
    where its absence is a failure.
    """
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            raise AssertionError(f"{name} is missing; scripts/test installs it")
        raise SkipTest(f"{name} is not installed")
    return path


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keycard(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """
    Run the keycard command as a user would.
    """
    return subprocess.run(
        [sys.executable, "-m", "twisted_keycard.admin", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=TIMEOUT,
        check=False,
    )


async def waitFor(condition: Any, what: str, timeout: float = TIMEOUT) -> float:
    """
    Poll C{condition()} until true, without blocking the reactor.

    @return: the seconds it took.
    @raise AssertionError: after C{timeout} seconds.
    """
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.02, lambda: None)
    return time.monotonic() - start


class Process:
    """
    A child process whose output goes to a log file.
    """

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.args, stdout=out, stderr=subprocess.STDOUT, env=ENV, cwd=ROOT
            )

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def bouncer(dataDir: Path, listen: str, log: Path, *options: str) -> Process:
    """
    C{twistd -n keycard-bouncer}, as a user starts it.
    """
    return Process(
        [
            TWISTD,
            "-n",
            "--pidfile=",
            "keycard-bouncer",
            "--data-dir",
            str(dataDir),
            "--listen",
            listen,
            *options,
        ],
        log,
    )


def accepts(port: int) -> bool:
    """
    Whether a server accepts connections on C{port} of 127.0.0.1 now.
    """
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


async def started(process: Process, port: int) -> None:
    process.start()
    await waitFor(lambda: f"starting on {port}" in process.output(), "the bouncer")


async def metricsBouncer(
    case: Any, dataDir: Path, log: Path, *options: str
) -> tuple[Process, int, int]:
    """
    Start C{twistd -n keycard-bouncer --metrics} on free loopback ports,
    stopped by C{case}'s cleanup, and wait until both ports are served.

    @return: the process, its PB port and its metrics port.
    """
    port, metricsPort = freePort(), freePort()
    process = bouncer(
        dataDir,
        f"tcp:{port}:interface=127.0.0.1",
        log,
        "--metrics",
        f"tcp:{metricsPort}:interface=127.0.0.1",
        *options,
    )
    case.addCleanup(process.stop)
    process.start()
    await waitFor(
        lambda: all(
            f"starting on {p}" in process.output() for p in (port, metricsPort)
        ),
        "the bouncer and its metrics",
    )
    return process, port, metricsPort


def scriptProcess(
    case: Any, args: list[str], log: Path, stdin: str
) -> subprocess.Popen[str]:
    """
    Run C{python ARGS...} (an example, a test's helper script) with C{stdin}
    as its standard input's one line (a password or a secret, never on its
    command line) and its output in C{log}; killed by C{case}'s cleanup.
    """
    out = open(log, "w")  # noqa: SIM115 - closed in cleanup
    case.addCleanup(out.close)
    process = subprocess.Popen(
        [sys.executable, *args],
        stdin=subprocess.PIPE,
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
    )
    case.addCleanup(process.wait)
    case.addCleanup(process.kill)
    assert process.stdin is not None
    process.stdin.write(stdin + "\n")
    process.stdin.close()
    return process


def requesterProcess(
    case: Any, bouncerPort: int, log: Path, secret: str, *extra: str
) -> tuple[subprocess.Popen[str], int]:
    """
    Start the requester process C{chat} (see C{tests/_requesterproc.py})
    on a free port, logging to C{log}, with the requester secret C{secret};
    killed by C{case}'s cleanup.

    @return: the process and the port its clients connect to.
    """
    port = freePort()
    script = str(ROOT / "tests" / "_requesterproc.py")
    args = [script, str(bouncerPort), str(port), "chat", *extra]
    return scriptProcess(case, args, log, secret), port
