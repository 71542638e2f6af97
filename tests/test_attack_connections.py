"""
Attack suite, issue 11 item 2: connections that never log in, against the
bouncer service with its defaults (and a soft limit of 1,024 open files, a
common default): idle ones that would exhaust its file descriptors, and a
plain TCP client on a TLS port.
"""

from __future__ import annotations

import json

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import deferLater

from twisted_keycard.pb import ConnectionLimits

from ._attack import AttackCase, openSockets
from ._procs import reactor

pytestmark = pytest.mark.integration

#: The default login deadline, and a margin for a loaded machine.
LOGIN_TIMEOUT = ConnectionLimits().loginTimeout or 0.0
MARGIN = 8.0

#: The default cap on connections not logged in per client address, and
#: the attacker's addresses.
PER_ADDRESS = ConnectionLimits().maxUnauthenticatedPerAddress or 0
ADDRESSES = 11


def stillOpen(output: str) -> int | None:
    """
    How many of its connections the idle attacker last saw open.
    """
    for line in reversed(output.splitlines()):
        if line.startswith('{"open"'):
            count: int = json.loads(line)["open"]
            return count
    return None


class IdleConnectionTests(AttackCase):
    def test_idleConnections(self) -> Deferred[None]:
        """
        1,100 connections from eleven addresses that never send a byte: the
        server holds only a bounded number of them, drops those it holds
        once the login deadline passes, and a real login works meanwhile.
        """

        async def go() -> None:
            await self.startBouncer()
            attacker = self.attacker(
                "idle", "--connections", "1100", "--sources", f"10-{9 + ADDRESSES}"
            )
            await self.ready(attacker, timeout=60.0)
            # What the server keeps, sampled over half a second: a socket it
            # closed to make room for a newer one is gone only at its next
            # reactor turn (Twisted closes an aborted connection then), so a
            # sample taken amid a burst of accepts may count a few more.
            samples = []
            for _ in range(5):
                samples.append(openSockets(self.pid))
                await deferLater(reactor, 0.1, lambda: None)
            took = await self.loginDuringAttack()
            samples.append(openSockets(self.pid))
            held = min(samples)
            dropped = await self.within(
                lambda: stillOpen(attacker.output()) == 0, LOGIN_TIMEOUT + MARGIN
            )
            stats = await self.finished(attacker)
            self.report(
                "idle",
                loginSeconds=round(took, 3),
                serverSockets=held,
                serverSocketsMost=max(samples),
                **stats,
            )
            self.assertHealthy()
            self.assertTrue(dropped, "idle connections still open")
            # Sixteen per address, the listener's, the legitimate client's;
            # at no sample near the 1,100 the attacker opened.
            self.assertLessEqual(held, PER_ADDRESS * ADDRESSES + 4)
            self.assertLessEqual(max(samples), 2 * (PER_ADDRESS * ADDRESSES + 4))
            self.assertEqual(stats["dropped"], stats["connections"])

        return ensureDeferred(go())


class TLSOverPlainTCPTests(AttackCase):
    def test_plainClientOnTLSPort(self) -> Deferred[None]:
        """
        Plain TCP clients on a TLS port, waiting (as a PB client does) for
        the server to speak first while the server waits for a TLS
        handshake: the server drops them once the login deadline passes.
        """

        async def go() -> None:
            await self.startBouncer(tls=True)
            attacker = self.attacker(
                "idle", "--connections", "20", "--sources", "10-13"
            )
            await self.ready(attacker)
            took = await self.loginDuringAttack()
            dropped = await self.within(
                lambda: stillOpen(attacker.output()) == 0, LOGIN_TIMEOUT + MARGIN
            )
            stats = await self.finished(attacker)
            self.report("tls-plain", loginSeconds=round(took, 3), **stats)
            self.assertHealthy()
            self.assertTrue(dropped, "plain connections still open")
            self.assertEqual(stats["dropped"], 20)

        return ensureDeferred(go())
