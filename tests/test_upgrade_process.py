"""
An upgrade as an operator makes it: the store the previous release wrote
(C{tests/data/format4}, see its README) in a data directory, this release's
C{twistd keycard-bouncer} started on it, and this release's C{keycard
login} presenting the tokens the previous release issued, over real
loopback TCP.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import TestCase

from twisted_keycard.store.sqlite._database import VERSION

from ._procs import ENV, ROOT, TIMEOUT, TWISTD, bouncer, freePort, keycard, started
from .test_sqlite_upgrade import FIXTURE, IDS, LISTED, leaseUntil, userVersion

# Slow: a bouncer process and the keycard command.
pytestmark = pytest.mark.integration

#: The fixture's tokens are valid for about 9.5 years from their family's
#: password login: a bouncer that allows families as long takes them.
FAMILY_LIFETIME = "400000000"


class UpgradeTests(TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        self.data = self.dir / "data"
        self.assertEqual(keycard("init", str(self.data)).returncode, 0)
        added = keycard(
            "user", "add", "--data-dir", str(self.data), "alice", stdin="alice password"
        )
        self.assertEqual(added.returncode, 0, added.stderr)
        # The restore: the old file in place of the new one, with none of
        # the new one's WAL left beside it.
        store = self.data / "keycard.db"
        for leftover in (store, Path(f"{store}-wal"), Path(f"{store}-shm")):
            leftover.unlink(missing_ok=True)
        shutil.copyfile(FIXTURE / "keycard.db", store)
        store.chmod(0o600)
        self.store = store

    def tokenFile(self, name: str) -> str:
        """
        A copy of one of the fixture's tokens, private as C{keycard login}
        wants it.
        """
        path = self.dir / name
        shutil.copyfile(FIXTURE / name, path)
        path.chmod(0o600)
        return str(path)

    def login(self, port: int, *args: str, stdin: str = "") -> tuple[int, str]:
        result = keycard(
            "login", "--connect", f"tcp:127.0.0.1:{port}", *args, stdin=stdin
        )
        return result.returncode, result.stdout + result.stderr

    def test_upgrade(self) -> Deferred[None]:
        """
        The bouncer upgrades the store as it opens it, takes the previous
        release's tokens (signed by either of its keys), refuses the one it
        revoked, and issues new keycards beside the old ones.
        """

        async def go() -> None:
            port = freePort()
            process = bouncer(
                self.data,
                f"tcp:{port}:interface=127.0.0.1",
                self.dir / "bouncer.log",
                "--max-family-lifetime",
                FAMILY_LIFETIME,
            )
            self.addCleanup(process.stop)
            await started(process, port)
            for name, avatar in [
                ("alice.token", "alice"),
                ("alice2.token", "alice"),
                ("carol.token", "carol"),
            ]:
                code, output = self.login(port, "--token-file", self.tokenFile(name))
                self.assertEqual(code, 0, output)
                self.assertIn(f"avatar id:  {avatar}", output)
            code, output = self.login(port, "--token-file", self.tokenFile("bob.token"))
            self.assertEqual((code, output.strip()), (1, "keycard: login refused"))
            code, output = self.login(port, "alice", stdin="alice password\n")
            self.assertEqual(code, 0, output)
            process.stop()
            self.assertNotIn("Traceback", process.output())

            listed = keycard("list", "--data-dir", str(self.data), "--json")
            self.assertEqual(listed.returncode, 0, listed.stderr)
            ids = {r["id"] for r in json.loads(listed.stdout)}
            self.assertLessEqual(set(IDS.values()), ids)
            # Three token logins and a password login.
            self.assertEqual(len(ids), len(LISTED) + 4)
            connection = sqlite3.connect(self.store)
            try:
                self.assertEqual(
                    connection.execute("PRAGMA user_version").fetchone(), (VERSION,)
                )
            finally:
                connection.close()

        return ensureDeferred(go())

    def test_earlierBouncerRunning(self) -> None:
        """
        While a bouncer of the previous release holds its lease on the store
        (it is running), this release's bouncer and C{keycard} command
        refuse to upgrade it, in one line, and leave it as it was.
        """
        leaseUntil(str(self.store), time.time() + 3600)
        started = subprocess.run(
            [
                TWISTD,
                "-n",
                "--pidfile=",
                "keycard-bouncer",
                "--data-dir",
                str(self.data),
                "--listen",
                "tcp:0:interface=127.0.0.1",
            ],
            capture_output=True,
            text=True,
            env=ENV,
            cwd=ROOT,
            timeout=TIMEOUT * 2,
            check=False,
        )
        listed = keycard("list", "--data-dir", str(self.data))
        for result, prefix in [(started, "keycard-bouncer: "), (listed, "keycard: ")]:
            self.assertNotEqual(result.returncode, 0, result.stderr)
            lines = result.stderr.strip().splitlines()
            self.assertEqual(len(lines), 1, result.stderr)
            self.assertTrue(lines[0].startswith(prefix), lines[0])
            self.assertIn("holds a lease on it for", lines[0])
            self.assertIn("stop every bouncer on this store", lines[0])
            self.assertNotIn("Traceback", result.stdout + result.stderr)
        self.assertEqual(userVersion(str(self.store)), 4)
