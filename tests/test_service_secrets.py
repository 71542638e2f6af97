"""
Integration tests of the bouncer service's secrets at rest: C{twistd -n
keycard-bouncer} as a real process makes its store private whatever the
umask, and refuses to start, with one line, on a data directory, store or
users file that other local users can read.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import TestCase

from ._procs import ENV, ROOT, TIMEOUT, TWISTD, bouncer, freePort, keycard, started

PASSWORD = "correct horse battery staple"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.integration
class BouncerSecretsTests(TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        self.data = self.dir / "data"
        result = keycard("init", str(self.data))
        self.assertEqual(result.returncode, 0, result.stderr)
        result = keycard(
            "user", "add", "--data-dir", str(self.data), "alice", stdin=PASSWORD + "\n"
        )
        self.assertEqual(result.returncode, 0, result.stderr)

    def twistd(self, *options: str) -> subprocess.CompletedProcess[str]:
        """
        Run the bouncer that is expected to stop on its own.
        """
        return subprocess.run(
            [
                TWISTD,
                "-n",
                "--pidfile=",
                "keycard-bouncer",
                "--data-dir",
                str(self.data),
                "--listen",
                f"tcp:{freePort()}:interface=127.0.0.1",
                *options,
            ],
            capture_output=True,
            text=True,
            env=ENV,
            cwd=ROOT,
            timeout=TIMEOUT,
            check=False,
        )

    def assertRefused(self, path: Path, *options: str) -> None:
        result = self.twistd(*options)
        output = (result.stdout + result.stderr).strip()
        self.assertEqual(result.returncode, 1, output)
        self.assertEqual(len(output.splitlines()), 1, output)
        self.assertIn(f"refusing to start: file {path}", output)
        self.assertIn("--insecure-permissions", output)

    def test_newStoreUnderUmask(self) -> Deferred[None]:
        """
        C{--store sqlite:PATH} on a new path: the database, its C{-wal} and
        its C{-shm} are 0600 under twistd's umask 022 and under 000.
        """

        async def go() -> None:
            for umask in (0o022, 0o000):
                shared = self.dir / f"shared-{umask:03o}"
                shared.mkdir()
                path = shared / "store.db"
                port = freePort()
                process = bouncer(
                    self.data,
                    f"tcp:{port}:interface=127.0.0.1",
                    self.dir / f"bouncer-{port}.log",
                    "--store",
                    f"sqlite:{path}",
                )
                self.addCleanup(process.stop)
                old = os.umask(umask)
                try:
                    await started(process, port)
                finally:
                    os.umask(old)
                login = keycard(
                    "login",
                    "--connect",
                    f"tcp:127.0.0.1:{port}",
                    "alice",
                    stdin=PASSWORD + "\n",
                )
                self.assertEqual(login.returncode, 0, login.stderr)
                names = sorted(p.name for p in shared.iterdir())
                self.assertEqual(names, ["store.db", "store.db-shm", "store.db-wal"])
                for name in names:
                    self.assertEqual(mode(shared / name), 0o600, name)
                process.stop()

        return ensureDeferred(go())

    def test_exposedDataDir(self) -> None:
        self.data.chmod(0o755)
        result = self.twistd()
        output = (result.stdout + result.stderr).strip()
        self.assertEqual(result.returncode, 1, output)
        self.assertEqual(
            output,
            f"keycard-bouncer: refusing to start: directory {self.data} has mode"
            " 0755, open to other users; make it 0600 (directories 0700), or"
            " start with --insecure-permissions",
        )

    def test_exposedStore(self) -> None:
        """
        A store other users can read (the token signing keys are in it) is
        refused, whether the data directory's or one given with C{--store}.
        """
        (self.data / "keycard.db").chmod(0o644)
        self.assertRefused(self.data / "keycard.db")
        shared = self.dir / "shared.db"
        shared.write_bytes(b"")
        shared.chmod(0o640)
        self.assertRefused(shared, "--store", f"sqlite:{shared}")

    def test_exposedUsers(self) -> None:
        (self.data / "users.scram").chmod(0o604)
        self.assertRefused(self.data / "users.scram")

    def test_insecurePermissions(self) -> Deferred[None]:
        """
        C{--insecure-permissions} starts the bouncer anyway.
        """
        self.data.chmod(0o755)
        (self.data / "keycard.db").chmod(0o644)

        async def go() -> None:
            port = freePort()
            process = bouncer(
                self.data,
                f"tcp:{port}:interface=127.0.0.1",
                self.dir / "bouncer.log",
                "--insecure-permissions",
            )
            self.addCleanup(process.stop)
            await started(process, port)

        return ensureDeferred(go())

    def test_saveTokenPlanted(self) -> Deferred[None]:
        """
        C{keycard login --save-token FILE} replaces a symbolic link planted
        at FILE (the file it points to is untouched) and a planted 0666 file
        (by a new 0600 file, not by writing into the planted one).
        """

        async def go() -> None:
            port = freePort()
            process = bouncer(
                self.data, f"tcp:{port}:interface=127.0.0.1", self.dir / "bouncer.log"
            )
            self.addCleanup(process.stop)
            await started(process, port)
            victim = self.dir / "victim"
            victim.write_text("victim's data")
            link = self.dir / "link.token"
            link.symlink_to(victim)
            wide = self.dir / "wide.token"
            wide.write_text("planted")
            wide.chmod(0o666)
            planted = os.stat(wide).st_ino
            for token in (link, wide):
                login = keycard(
                    "login",
                    "--connect",
                    f"tcp:127.0.0.1:{port}",
                    "alice",
                    "--save-token",
                    str(token),
                    stdin=PASSWORD + "\n",
                )
                self.assertEqual(login.returncode, 0, login.stderr)
                self.assertFalse(token.is_symlink())
                self.assertEqual(mode(token), 0o600)
                saved = token.read_text().strip()
                self.assertGreater(len(saved), 20, saved)
                self.assertNotIn("planted", saved)
            self.assertEqual(victim.read_text(), "victim's data")
            self.assertNotEqual(os.stat(wide).st_ino, planted)

        return ensureDeferred(go())
