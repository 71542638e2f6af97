"""
Attack suite, issue 11 item 6: PB calls a stranger can make (unknown
methods, wrong arguments, unregistered classes, names that are not text, a
user name with a lone surrogate), against the bouncer service with its
defaults.
"""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred, ensureDeferred

from ._attack import AttackCase

pytestmark = pytest.mark.integration

#: Log lines the attack below may add at most, besides the bouncer's one
#: line per keycard it refuses: refused calls are logged a few lines per
#: client address and minute, not one (or a traceback) each.
MAX_LOG_LINES = 200

#: The bouncer's lines about keycards it refused (one per decision).
DECISIONS = ("_login.Authentication#", "_login.Throttler#")


class QuietErrorTests(AttackCase):
    def test_hostileCalls(self) -> Deferred[None]:
        """
        2,000 hostile calls from ten addresses: no traceback and a bounded
        number of lines in the server's log, nothing in the answers that
        names a source file, a frame or a failure count, and a real login
        still works while they arrive.
        """

        async def go() -> None:
            await self.startBouncer()
            before = self.serverLog().splitlines()
            attacker = self.attacker(
                "calls", "--messages", "2000", "--sources", "10-19", "--hold"
            )
            await self.ready(attacker)
            took = await self.loginDuringAttack()
            await self.attackDone(attacker)
            stats = await self.finished(attacker)
            added = self.serverLog().splitlines()[len(before) :]
            others = [line for line in added if not any(d in line for d in DECISIONS)]
            self.report(
                "calls",
                loginSeconds=round(took, 3),
                addedLines=len(added),
                otherLines=len(others),
                **stats,
            )
            self.assertHealthy()
            self.assertEqual(stats["messages"], 2000)
            self.assertEqual(stats["leaks"], [])
            self.assertLess(len(others), MAX_LOG_LINES)
            self.assertLess(len(added), stats["messages"])

        return ensureDeferred(go())
