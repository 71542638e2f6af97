"""
Integration tests of how C{twistd keycard-bouncer} fails to start: as a
real process, every failure is one line and a non-zero exit status, never a
usage dump or a traceback, daemonized or not; and a start names the address
and port it listens on.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import TestCase

from ._procs import ENV, ROOT, TIMEOUT, TWISTD, bouncer, freePort, keycard, waitFor


@pytest.mark.integration
class StartupFailureTests(TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        self.data = self.dir / "data"
        result = keycard("init", str(self.data))
        self.assertEqual(result.returncode, 0, result.stderr)

    def command(self, *options: str, data: Path | None = None) -> list[str]:
        return [
            TWISTD,
            "-n",
            "--pidfile=",
            "keycard-bouncer",
            "--data-dir",
            str(data or self.data),
            *options,
        ]

    def assertOneLine(
        self, result: subprocess.CompletedProcess[str], expected: str
    ) -> None:
        """
        The process failed with one line on standard error holding
        C{expected}, and no traceback or usage anywhere.
        """
        output = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0, output)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertTrue(lines[0].startswith("keycard-bouncer: "), lines[0])
        self.assertIn(expected, lines[0])
        self.assertNotIn("Traceback", output)
        self.assertNotIn("Usage:", output)

    def runAll(
        self, cases: dict[tuple[str, ...], str], data: Path | None = None
    ) -> None:
        """
        Start one bouncer per case at once, each expected to stop on its own.
        """
        procs = {
            args: subprocess.Popen(
                self.command(*args, data=data),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=ENV,
                cwd=ROOT,
            )
            for args in cases
        }
        for args, proc in procs.items():
            try:
                out, err = proc.communicate(timeout=TIMEOUT * 2)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            result = subprocess.CompletedProcess(args, proc.returncode, out, err)
            with self.subTest(args=args):
                self.assertOneLine(result, cases[args])

    def test_badOptions(self) -> None:
        """
        Bad options and a missing data directory.
        """
        # Any free port: the store fails before anything listens.
        free = "tcp:0:interface=127.0.0.1"
        self.runAll(
            {
                ("--listen", "bogus:8800"): "unknown endpoint type 'bogus'",
                ("--listen", "tcp:notaport"): "'notaport' is not a number",
                ("--listen", "ssl:8800:privateKey=/no/such.pem"): "/no/such.pem",
                ("--listen", free, "--auth", "anonymous"): "serves no keycard kind",
                ("--listen", free, "--auth", "bogus:x"): "unknown --auth type",
                ("--listen", free, "--policy", "scram and"): "bad --policy",
                ("--listen", free, "--policy", "srp"): "no --auth checker serves srp",
                ("--listen", free, "--allow", "10.0.0.300"): "bad --allow",
                ("--listen", free, "--duration", "abc"): "--duration takes a number",
                (
                    "--listen",
                    free,
                    "--duration",
                    "0",
                ): "--duration must be a positive number",
            }
        )
        self.runAll({("--listen", free): "keycard init"}, data=self.dir / "missing")

    def test_portInUse(self) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            self.runAll(
                {
                    ("--listen", f"tcp:{port}:interface=127.0.0.1"): (
                        f"cannot listen on 127.0.0.1:{port}: address already in use"
                    )
                }
            )

    def test_storeCannotOpen(self) -> None:
        """
        A store that cannot be opened stops the bouncer, instead of a
        bouncer that listens and refuses every login.
        """
        garbage = self.dir / "garbage.db"
        garbage.write_bytes(b"this is not a database" * 200)
        garbage.chmod(0o600)
        # Any free port: the store fails before anything listens.
        free = "tcp:0:interface=127.0.0.1"
        self.runAll(
            {
                ("--listen", free, "--store", f"sqlite:{garbage}"): (
                    "cannot open the store"
                ),
                ("--listen", free, "--store", f"sqlite:{self.dir}/no/x.db"): (
                    "no such file or directory"
                ),
            }
        )

    def daemonized(self, *options: str) -> subprocess.CompletedProcess[str]:
        """
        Start C{twistd keycard-bouncer} daemonized (no C{-n}), with its pid
        and log files in the test's directory, as an init script does; stop
        the daemon if it started.
        """
        pid = self.dir / "twistd.pid"
        result = subprocess.run(
            [
                TWISTD,
                f"--pidfile={pid}",
                f"--logfile={self.dir / 'twistd.log'}",
                "keycard-bouncer",
                "--data-dir",
                str(self.data),
                *options,
            ],
            capture_output=True,
            text=True,
            env=ENV,
            cwd=ROOT,
            timeout=TIMEOUT * 2,
            check=False,
        )
        if pid.exists():
            os.kill(int(pid.read_text()), signal.SIGTERM)
            deadline = time.monotonic() + TIMEOUT
            while pid.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return result

    def test_daemonized(self) -> None:
        """
        Daemonized, a start fails with the same one line as in the
        foreground, and a non-zero status: what can fail is checked before
        twistd forks (its parent would print a repr cut at 100 bytes), so
        no pid file is left behind.
        """
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            free = f"tcp:{freePort()}:interface=127.0.0.1"
            cases = {
                (f"tcp:{port}:interface=127.0.0.1",): (
                    f"cannot listen on 127.0.0.1:{port}: address already in use"
                ),
                (free, "--metrics", f"tcp:{port}:interface=127.0.0.1"): (
                    f"cannot listen on 127.0.0.1:{port}: address already in use"
                ),
                (free, "--store", f"sqlite:{self.dir}/no/x.db"): (
                    f"cannot open the store sqlite:{self.dir}/no/x.db:"
                    " no such file or directory"
                ),
                (free, "--auth", "file:/nonexistent"): (
                    "bad --auth 'file:/nonexistent': /nonexistent:"
                    " no such file or directory"
                ),
                # Fails only once twistd forked: the child prints the line.
                (f"unix:{self.dir}/no/sock",): (
                    f"cannot listen on unix:{self.dir}/no/sock:"
                    " no such file or directory"
                ),
            }
            for (listen, *others), expected in cases.items():
                with self.subTest(args=[listen, *others]):
                    result = self.daemonized("--listen", listen, *others)
                    self.assertOneLine(result, expected)
                    self.assertEqual(result.returncode, 1)
                    self.assertFalse((self.dir / "twistd.pid").exists())

    def test_daemonizedStarts(self) -> None:
        """
        A daemonized start that succeeds exits 0 with nothing on standard
        error, and leaves the caller's pipes closed (the copy of standard
        error kept for a failure is closed once started), else this would
        wait for the daemon to end.
        """
        pid = self.dir / "twistd.pid"
        port = freePort()
        result = self.daemonized("--listen", f"tcp:{port}:interface=127.0.0.1")
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.assertFalse(pid.exists())
        line = f'bouncer "bouncer" listening on 127.0.0.1:{port} (tcp)'
        self.assertIn(line, (self.dir / "twistd.log").read_text())

    def test_missingAuthFile(self) -> None:
        """
        A C{file:} checker whose file is missing stops the start: twisted's
        only warns, and the bouncer would serve nobody.
        """
        free = "tcp:0:interface=127.0.0.1"
        self.runAll(
            {
                ("--listen", free, "--auth", "file:/nonexistent"): (
                    "bad --auth 'file:/nonexistent': /nonexistent:"
                    " no such file or directory"
                )
            }
        )

    def test_startLine(self) -> Deferred[None]:
        """
        The log names the bouncer, and the address and port it listens on.
        """
        port = freePort()
        process = bouncer(
            self.data,
            f"tcp:{port}:interface=127.0.0.1",
            self.dir / "b.log",
            "--name",
            "edge-1",
        )
        self.addCleanup(process.stop)
        process.start()
        line = f'bouncer "edge-1" listening on 127.0.0.1:{port} (tcp)'
        return ensureDeferred(
            waitFor(lambda: line in process.output(), "the start line")
        ).addCallback(lambda _: None)
