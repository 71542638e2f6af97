"""
Tests for the twistd plugin's options (L{twisted_keycard.service._tap}):
the limits on logins in progress and on password hashing reach the bouncer
and the password checkers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.application.service import IServiceCollection
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard.bouncer._bouncer import Bouncer
from twisted_keycard.passwords import PasswordFile
from twisted_keycard.service._datadir import DataDir
from twisted_keycard.service._tap import Options, makeService

DATA = Path(__file__).resolve().parent / "data"


class TapLimitsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dataDir = Path(self.mktemp())
        DataDir.create(self.dataDir)

    def service(self, *args: str) -> tuple[Bouncer, Options]:
        options = Options()
        options.parseOptions(["--data-dir", str(self.dataDir), *args])
        top: Any = makeService(options)
        assert IServiceCollection.providedBy(top)
        [bouncer] = [s for s in top if isinstance(s, Bouncer)]
        return bouncer, options

    def test_defaults(self) -> None:
        bouncer, _ = self.service()
        limits = bouncer._authentication.pending.limits
        self.assertEqual(
            (
                limits.maxPending,
                limits.maxPendingPerAddress,
                limits.maxPendingPerConnection,
            ),
            (10_000, 100, 4),
        )

    def test_limits(self) -> None:
        """
        The options set the bounds on logins in progress, and a password
        file gets the hash pool of the given size and the password cap.
        """
        bouncer, options = self.service(
            "--max-pending-per-connection=2",
            "--hash-threads=3",
            "--hash-queue=5",
            "--max-password-bytes=100",
            f"--auth=htpasswd:{DATA / 'htpasswd.txt'}",
        )
        self.assertEqual(
            bouncer._authentication.pending.limits.maxPendingPerConnection, 2
        )
        [checker] = options["credCheckers"]
        assert isinstance(checker, PasswordFile)
        pool: Any = checker.hashPool
        self.assertEqual((pool.threads, pool.queued), (3, 5))
        self.assertEqual(checker.maxPasswordBytes, 100)

    def test_badValues(self) -> None:
        for option in [
            "--max-pending-per-connection=0",
            "--hash-threads=0",
            "--hash-queue=-1",
            "--max-password-bytes=0",
        ]:
            options = Options()
            error = self.assertRaises(
                SystemExit,
                options.parseOptions,
                ["--data-dir", str(self.dataDir), option],
            )
            self.assertIn(option.split("=")[0], str(error))
