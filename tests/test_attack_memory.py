"""
Attack suite, issue 11 item 1: a few bytes that decode to a great many
objects, before login, against the bouncer service with its defaults.
"""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import deferLater

from ._attack import AttackCase
from ._procs import reactor

pytestmark = pytest.mark.integration


class MemoryAmplificationTests(AttackCase):
    def test_listOfEmptyLists(self) -> Deferred[None]:
        """
        Six connections from six addresses, each sending a list header for
        600,001 items and 600,000 empty lists (600 KB), and doing it again
        whenever they are dropped: the server refuses each such message at
        its header and stays small, and a real login still works.
        """

        async def go() -> None:
            await self.startBouncer()
            attacker = self.attacker(
                "objects", "--connections", "6", "--sources", "10-15"
            )
            await self.ready(attacker)
            for _ in range(4):
                await deferLater(reactor, 0.5, self.sample)
            took = await self.loginDuringAttack()
            await deferLater(reactor, 1.0, self.sample)
            stats = await self.finished(attacker)
            self.report("objects", loginSeconds=round(took, 3), **stats)
            self.assertHealthy()
            self.assertGreaterEqual(stats["dropped"], 6)

        return ensureDeferred(go())
