"""
A real PostgreSQL server for integration tests: a fresh cluster in a
temporary directory, listening on a free port of 127.0.0.1 with
C{scram-sha-256} password logins, stopped by the test that started it.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from twisted.trial.unittest import SkipTest

from ._procs import TIMEOUT, freePort


def postgresTool(name: str) -> str:
    """
    The path of one of PostgreSQL's programs: on C{PATH}, or where Debian's
    C{postgresql} package puts them (C{/usr/lib/postgresql/<version>/bin});
    skip without it, except in CI, where its absence is a failure.
    """
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)),
        None,
    )
    if found is None:
        if os.environ.get("CI"):
            raise AssertionError(
                f"PostgreSQL's {name} is missing; scripts/test installs it"
            )
        raise SkipTest(f"PostgreSQL ({name}) is not installed")
    return found


class PostgreSQL:
    """
    A PostgreSQL cluster of its own.  As root, it runs as the C{postgres}
    user (C{initdb} refuses root); otherwise as the current user.

    @ivar port: the TCP port it listens on, on 127.0.0.1.
    """

    def __init__(self) -> None:
        self.initdb = postgresTool("initdb")
        self.pgCtl = postgresTool("pg_ctl")
        self.psqlPath = postgresTool("psql")
        self.asUser: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                raise SkipTest("running as root, and runuser is missing")
            self.asUser = [runuser, "-u", "postgres", "--"]
        self.dir = Path(tempfile.mkdtemp(prefix="keycard-pg-"))
        if self.asUser:
            shutil.chown(self.dir, "postgres")
        self.data = self.dir / "data"
        self.port = freePort()
        self.running = False

    def _run(
        self, args: list[str], stdin: str = "", env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.asUser, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env={**os.environ, "LC_ALL": "C.UTF-8", **(env or {})},
            cwd=self.dir,
        )

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> str:
        if result.returncode != 0:
            raise AssertionError(f"{what} failed: {result.stdout}{result.stderr}")
        return result.stdout

    def start(self) -> None:
        """
        Make the cluster (UTF-8, C{scram-sha-256} for TCP logins, trust
        for the superuser over its private UNIX socket) and start it.
        """
        self._check(
            self._run(
                [
                    self.initdb, "-D", str(self.data), "-U", "postgres",
                    "-E", "UTF8", "--locale=C", "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ]
            ),
            "initdb",
        )  # fmt: skip
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._check(
            self._run(
                [
                    self.pgCtl, "-D", str(self.data), "-l", str(self.dir / "log"),
                    "-o", options, "-w", "-t", str(int(TIMEOUT)), "start",
                ]
            ),
            "pg_ctl start",
        )  # fmt: skip
        self.running = True

    def stop(self) -> None:
        """
        Stop the server, if it runs, and remove its directory.
        """
        if self.running:
            self._run([self.pgCtl, "-D", str(self.data), "-m", "immediate", "stop"])
            self.running = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def sql(self, script: str, **variables: str) -> str:
        """
        Run C{script} as the superuser, its C{:'name'} variables given as
        C{variables} (psql quotes them), and return the rows, one a line,
        fields split by C{|}.
        """
        args = [self.psqlPath, "-X", "-At", "-v", "ON_ERROR_STOP=1"]
        args += [
            "-h", str(self.dir), "-p", str(self.port), "-U", "postgres",
            "-d", "postgres",
        ]  # fmt: skip
        for name, value in variables.items():
            args += ["-v", f"{name}={value}"]
        return self._check(self._run(args, stdin=script), "psql")

    def login(self, user: str, password: str) -> subprocess.CompletedProcess[str]:
        """
        Log in over TCP as C{user} with libpq (psql), SCRAM-SHA-256, and
        ask who it is.
        """
        conninfo = f"host=127.0.0.1 port={self.port} user={user} dbname=postgres"
        return self._run(
            [self.psqlPath, "-X", "-At", "-w", conninfo, "-c", "SELECT current_user"],
            env={"PGPASSWORD": password},
        )

    def verifier(self, role: str) -> str:
        """
        The SCRAM-SHA-256 verifier PostgreSQL stores for C{role}.
        """
        return self.sql(
            "SELECT rolpassword FROM pg_authid WHERE rolname = :'role';", role=role
        ).strip()


def postgres(addCleanup: Callable[[Callable[[], None]], object]) -> PostgreSQL:
    """
    A started L{PostgreSQL}, stopped at C{addCleanup} time.
    """
    server = PostgreSQL()
    addCleanup(server.stop)
    server.start()
    return server
