"""
The attack suite's harness: a real C{twistd -n keycard-bouncer} with its
defaults on a loopback port, a hostile peer (L{tests._attacker}) in its own
process, the server's memory and log, and a legitimate library login from
an unused 127.0.0.x address, timed while the attack goes on.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.trial.unittest import TestCase

from twisted_keycard import KeycardClientFactory
from twisted_keycard.scram import SCRAMAnswerer

from ._procs import (
    ENV,
    ROOT,
    TIMEOUT,
    Process,
    bouncer,
    freePort,
    keycard,
    reactor,
    waitFor,
)
from ._procs import started as _started

PASSWORD = "correct horse battery staple"

#: Server memory an attack may add at most (issue 11).
MAX_GROWTH = 64 * 1024 * 1024

#: What a server log must never hold.
TRACEBACK_MARKERS = ("Traceback", "Unhandled Error")


def rss(pid: int) -> int:
    """
    The resident memory of process C{pid}, in bytes.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def openSockets(pid: int) -> int:
    """
    How many sockets process C{pid} holds open.
    """
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd).startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


class LimitedProcess(Process):
    """
    A L{Process} started with a soft limit on its open files, as a server
    gets by default on many systems.
    """

    def __init__(self, args: list[str], log: Path, maxFiles: int | None) -> None:
        super().__init__(args, log)
        self.maxFiles = maxFiles

    def start(self) -> None:
        maxFiles = self.maxFiles

        def limit() -> None:
            if maxFiles is not None:
                _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                resource.setrlimit(resource.RLIMIT_NOFILE, (maxFiles, hard))

        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.args,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=ENV,
                cwd=ROOT,
                preexec_fn=limit,
            )


class AttackCase(TestCase):
    """
    A trial test case with a real bouncer service to attack.

    @ivar server: the bouncer's process, started by L{startBouncer}.
    @ivar port: the port it listens on, on 127.0.0.1.
    @ivar baseline: its memory after one warm-up login.
    """

    #: Soft limit on the bouncer's open files; C{None} keeps the test's.
    maxFiles: int | None = 1024

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        self.data = self.dir / "data"
        result = keycard("init", str(self.data), "--dev-cert", "localhost")
        self.assertEqual(result.returncode, 0, result.stderr)
        result = keycard(
            "user", "add", "--data-dir", str(self.data), "alice", stdin=PASSWORD + "\n"
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.legitimate = 200
        self.loginTook = float("inf")
        self.loginError: Exception | None = None
        self.tls = False

    async def startBouncer(self, *options: str, tls: bool = False) -> None:
        """
        Start the service with its defaults (and C{options}) on a free
        port, over TLS with the data directory's certificate if C{tls}; log
        in once to warm it up (over TCP), and record its memory.
        """
        self.port = freePort()
        listen = f"tcp:{self.port}:interface=127.0.0.1"
        if tls:
            pem = self.data / "tls" / "server.pem"
            listen = f"ssl:{self.port}:interface=127.0.0.1:privateKey={pem}"
        plain = bouncer(self.data, listen, self.dir / "bouncer.log", *options)
        self.server = LimitedProcess(plain.args, plain.log, self.maxFiles)
        self.addCleanup(self.server.stop)
        await _started(self.server, self.port)
        self.tls = tls
        await self.login()
        self.baseline = rss(self.pid)
        self.peak = self.baseline

    @property
    def pid(self) -> int:
        assert self.server.proc is not None
        return self.server.proc.pid

    def sample(self) -> int:
        """
        Record the server's memory; the server must still be running.
        """
        assert self.server.proc is not None
        self.assertIsNone(self.server.proc.poll(), "the bouncer died")
        self.peak = max(self.peak, rss(self.pid))
        return self.peak

    async def login(self, deadline: float = TIMEOUT) -> float:
        """
        Log in as alice from a 127.0.0.x address no attacker uses.

        @return: the seconds it took, from connecting to holding the
            perspective.
        """
        self.legitimate += 1
        source = f"127.0.0.{self.legitimate}"
        start = time.monotonic()
        factory = KeycardClientFactory()
        endpoint: Any = TCP4ClientEndpoint(
            reactor, "127.0.0.1", self.port, timeout=deadline, bindAddress=(source, 0)
        )
        if self.tls:
            trust = Certificate.loadPEM((self.data / "tls" / "server.pem").read_bytes())
            endpoint = wrapClientTLS(optionsForClientTLS("localhost", trust), endpoint)
        await endpoint.connect(factory)
        try:
            d = factory.login([SCRAMAnswerer("alice", PASSWORD)])
            d.addTimeout(deadline, reactor)
            perspective: Any = await d
            self.assertIsNotNone(perspective)
        finally:
            factory.disconnect()
        return time.monotonic() - start

    async def loginDuringAttack(self) -> float:
        """
        The legitimate login, timed (the time is a figure to print, not a
        bound: a test asserts no wall-clock time), with the server's memory
        sampled before and after.
        """
        self.sample()
        try:
            took = await self.login()
        except Exception as e:
            took = float("inf")
            self.loginError = e
        self.sample()
        self.loginTook = took
        return took

    def attacker(self, mode: str, *options: str) -> Process:
        """
        Start a hostile peer (see L{tests._attacker}) against the bouncer.
        """
        process = Process(
            [sys.executable, "-m", "tests._attacker", mode, str(self.port), *options],
            self.dir / f"attacker-{mode}.log",
        )
        self.addCleanup(process.stop)
        process.start()
        return process

    async def ready(self, attacker: Process, timeout: float = 60.0) -> None:
        await waitFor(lambda: "ready" in attacker.output(), "the attack", timeout)

    async def within(self, condition: Any, timeout: float) -> bool:
        """
        Whether C{condition()} becomes true within C{timeout} seconds.
        """
        try:
            await waitFor(condition, "a condition", timeout)
        except AssertionError:
            return False
        return True

    async def attackDone(self, attacker: Process, timeout: float = 60.0) -> None:
        """
        Wait until a streaming attacker has sent all its messages.
        """
        await waitFor(lambda: '{"done"' in attacker.output(), "the attack", timeout)

    async def finished(
        self, attacker: Process, timeout: float = 90.0
    ) -> dict[str, Any]:
        """
        Stop the attacker (if it still runs) and read its statistics.
        """

        def done() -> bool:
            return attacker.proc is None or attacker.proc.poll() is not None

        if not done():
            assert attacker.proc is not None
            attacker.proc.terminate()
        await waitFor(done, "the attacker to end", timeout)
        lines = attacker.output().splitlines()
        stats: dict[str, Any] = json.loads(lines[-1])
        return stats

    def serverLog(self) -> str:
        return self.server.output()

    def assertHealthy(self) -> None:
        """
        The server still runs, grew less than issue 11 allows, and logged
        no traceback; the legitimate login during the attack succeeded (its
        time is printed: issue 11's second is a figure of
        docs/security.rst, which a loaded machine must not fail).
        """
        took, error = self.loginTook, self.loginError
        self.assertIsNone(error, f"the legitimate login failed: {error!r}")
        print(f"\n{self.id()}: the legitimate login took {took:.3f} s")
        self.sample()
        growth = self.peak - self.baseline
        self.assertLess(growth, MAX_GROWTH, f"server memory grew {growth >> 20} MiB")
        log = self.serverLog()
        for marker in TRACEBACK_MARKERS:
            self.assertEqual(log.count(marker), 0, f"{marker!r} in the server log")

    def report(self, name: str, **figures: object) -> None:
        """
        Append the attack's figures (memory growth, log lines, and
        C{figures}) as one JSON line to the file named by
        C{$KEYCARD_ATTACK_FIGURES}, if set: the before and after figures of
        issue 11's note are made this way.
        """
        path = os.environ.get("KEYCARD_ATTACK_FIGURES")
        if not path:
            return
        figures = {
            "attack": name,
            "rssGrowthMiB": round((self.peak - self.baseline) / 2**20, 1),
            "logLines": self.serverLog().count("\n"),
            "tracebacks": self.serverLog().count("Traceback"),
            **figures,
        }
        with open(path, "a") as out:
            out.write(json.dumps(figures) + "\n")


__all__ = ["AttackCase", "openSockets", "rss", "waitFor"]
