"""
A real C{redis-server} for tests: started on a free loopback port in a
temporary directory, stopped (or killed, and started again on the same
files) by the test that started it.

Without C{redis-server} the tests that need one are skipped with a clear
message, except in CI (C{CI} set), where they fail: C{scripts/test}
installs it.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest

from ._procs import freePort

reactor: Any = _reactor
SERVER = "redis-server"
#: Seconds a server has to start, a Deferred to fire.
DEADLINE = 30.0


def requireRedis() -> str:
    """
    The path of C{redis-server}.

    @raise SkipTest: when it is missing, outside CI.
    @raise AssertionError: when it is missing in CI.
    """
    path = shutil.which(SERVER)
    if path is None:
        message = (
            "redis-server is not installed: apt-get install redis-server"
            " (scripts/test does)"
        )
        if os.environ.get("CI"):
            raise AssertionError(message)
        raise SkipTest(message)
    return path


class RedisServer:
    """
    One C{redis-server} process on 127.0.0.1 (or C{host}), its data in
    C{directory}.
    """

    def __init__(
        self,
        directory: Path,
        *options: str,
        host: str = "127.0.0.1",
        tls: tuple[Path, Path] | None = None,
        monitor: tuple[str, int] | None = None,
    ) -> None:
        """
        @param tls: the certificate and key files to serve TLS with (and
            no plain TCP).
        @param monitor: run a Sentinel that watches the primary at this
            address, as C{main}.
        """
        self.binary = requireRedis()
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = freePort()
        self.options = list(options)
        self.tls = tls
        self.monitor = monitor
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "redis" if self.tls is None else "rediss"
        return f"{scheme}://{self.host}:{self.port}/0"

    def start(self) -> None:
        """
        Start the server and wait until it accepts connections.
        """
        ports = ["--port", str(self.port)]
        if self.tls is not None:
            certificate, key = self.tls
            ports = ["--port", "0", "--tls-port", str(self.port)]
            ports += ["--tls-cert-file", str(certificate), "--tls-key-file", str(key)]
            ports += ["--tls-auth-clients", "no"]
        ready = b"Ready to accept connections"
        if self.monitor is not None:
            config = self.directory / "sentinel.conf"
            host, port = self.monitor
            config.write_text(
                f"sentinel monitor main {host} {port} 1\n"
                "sentinel down-after-milliseconds main 500\n"
                "sentinel failover-timeout main 2000\n"
            )
            ports = [str(config), "--sentinel", *ports]
            ready = b"+monitor master"
        self.proc = subprocess.Popen(
            [
                self.binary,
                *ports,
                "--bind",
                self.host,
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--logfile",
                "",
                *self.options,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._waitForLine(ready)

    def _waitForLine(self, wanted: bytes) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        out = self.proc.stdout
        seen = b""
        deadline = time.monotonic() + DEADLINE
        while wanted not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise AssertionError(f"redis-server did not start: {seen[-2000:]!r}")
            ready, _, _ = select.select([out], [], [], left)
            if ready:
                chunk = os.read(out.fileno(), 65536)
                if not chunk:
                    continue
                seen += chunk
        # Keep reading its log, so that the pipe never fills.
        self._drain = threading.Thread(target=out.read, daemon=True)
        self._drain.start()

    def kill(self) -> None:
        """
        SIGKILL the server, as a crash would.
        """
        self._stop(kill=True)

    def stop(self) -> None:
        self._stop(kill=False)

    def _stop(self, kill: bool) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(DEADLINE)
        self._drain.join(DEADLINE)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.proc = None

    def cli(self, *args: str) -> str:
        """
        Run C{redis-cli} against the server.
        """
        done = subprocess.run(
            ["redis-cli", "-h", self.host, "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=True,
        )
        return done.stdout.strip()


def spin(d: Deferred[Any], timeout: float = DEADLINE) -> Any:
    """
    Run the reactor (not running: from a synchronous test) until C{d}
    fires; return its result or raise its failure.
    """
    outcome: list[Any] = []
    d.addBoth(outcome.append)
    deadline = time.monotonic() + timeout
    while not outcome:
        if time.monotonic() > deadline:
            raise AssertionError(f"{d!r} did not fire in {timeout}s")
        reactor.iterate(0.005)
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result
