"""
The restore runbook of docs/production.rst, with real processes: a bouncer
on SQLite, a token saved by C{keycard login}, an online backup, a
revocation made after it, and the backup restored; the revocation journal
brings the revocation back (issue 24: it was forgotten, and only a key
rotation, logging every client out, made up for it).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import TestCase

from ._procs import accepts, bouncer, freePort, keycard, started, waitFor

PASSWORD = "correct horse battery staple"

pytestmark = pytest.mark.integration


class RestoreTests(TestCase):
    def test_revocationSurvivesRestore(self) -> Deferred[None]:
        base = Path(self.mktemp()).resolve()
        base.mkdir(parents=True)
        data = base / "data"
        self.assertEqual(keycard("init", str(data)).returncode, 0)
        for name in ("alice", "bob"):
            added = keycard(
                "user", "add", "--data-dir", str(data), name, stdin=PASSWORD + "\n"
            )
            self.assertEqual(added.returncode, 0, added.stderr)
        port = freePort()
        connect = f"tcp:127.0.0.1:{port}"
        listen = f"tcp:{port}:interface=127.0.0.1"
        process = bouncer(data, listen, base / "bouncer.log")
        self.addCleanup(process.stop)

        def login(name: str) -> Path:
            token = base / f"{name}.token"
            result = keycard(
                "login", "--connect", connect, name, "--save-token", str(token),
                stdin=PASSWORD + "\n",
            )  # fmt: skip
            self.assertEqual(result.returncode, 0, result.stderr)
            return token

        def withToken(token: Path) -> int:
            result = keycard("login", "--connect", connect, "--token-file", str(token))
            return result.returncode

        async def go() -> None:
            await started(process, port)
            alice, bob = login("alice"), login("bob")
            backup = base / "backup.db"
            source = sqlite3.connect(data / "keycard.db")
            target = sqlite3.connect(backup)
            source.backup(target)
            target.close()
            source.close()
            revoked = keycard("revoke", "--data-dir", str(data), "--avatar", "alice")
            self.assertEqual(revoked.returncode, 0, revoked.stderr)
            # Running bouncers read a revocation within a second (a token
            # login just after it may still pass); then it is refused.
            await waitFor(lambda: withToken(alice) != 0, "the revocation to apply")
            # The runbook: stop, restore the file alone, start.
            process.stop()
            for suffix in ("-wal", "-shm"):
                (data / f"keycard.db{suffix}").unlink(missing_ok=True)
            backup.chmod(0o600)
            backup.replace(data / "keycard.db")
            await started(process, port)
            await waitFor(lambda: accepts(port), "the bouncer to accept")
            self.assertNotEqual(withToken(alice), 0)
            self.assertEqual(withToken(bob), 0)

        return ensureDeferred(go())
