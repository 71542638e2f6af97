"""
Attack suite: seeded hostile PB traffic (random banana, random commands,
methods and arguments, unregistered classes, truncated and oversized
messages) against the bouncer service with its defaults.
"""

from __future__ import annotations

import os

import pytest
from twisted.internet.defer import Deferred, ensureDeferred

from ._attack import AttackCase

pytestmark = pytest.mark.integration

#: Messages sent per run, at least.
MESSAGES = 10_000

#: The seed; set C{$KEYCARD_FUZZ_SEED} to replay another run.
SEED = int(os.environ.get("KEYCARD_FUZZ_SEED", "11"))


class FuzzTests(AttackCase):
    def test_fuzz(self) -> Deferred[None]:
        """
        10,000 generated hostile messages from ten addresses: the server
        stays up and small, logs no traceback, leaks nothing in its answers,
        and a real login still works while they arrive.
        """

        async def go() -> None:
            await self.startBouncer()
            attacker = self.attacker(
                "fuzz",
                "--messages",
                str(MESSAGES),
                "--seed",
                str(SEED),
                "--sources",
                "10-19",
                "--ready-after",
                "1000",
                "--hold",
                "--duration",
                "90",
            )
            await self.ready(attacker)
            took = await self.loginDuringAttack()
            await self.attackDone(attacker, timeout=90.0)
            stats = await self.finished(attacker)
            self.report("fuzz", seed=SEED, loginSeconds=round(took, 3), **stats)
            self.assertHealthy()
            self.assertEqual(stats["messages"], MESSAGES)
            self.assertEqual(stats["leaks"], [])

        return ensureDeferred(go())
