"""
Attacks on PB's own login on a keycard root (issue 23, finding 4), against
a real application process (L{tests._portalroot}: L{KeycardRoot.fromPortal}
with C{stockLogin=True} and an account limit of 5), from a hostile client
in a process of its own (L{tests._bouncerattacker} C{stock}) on several
127.0.0.x addresses.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.cred.credentials import UsernamePassword
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.spread import pb
from twisted.trial.unittest import TestCase

from twisted_keycard.pb._root import STOCK_KIND

from ._procs import Process, freePort, waitFor
from .test_attack_bouncer import Attacker

pytestmark = pytest.mark.integration

reactor: Any = _reactor
PASSWORD = "correct horse battery staple"

#: What a throttled login is told.
THROTTLED = "denied: too many failed logins; try again later"


class StockLoginAttackTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)

    async def startRoot(self, *options: str) -> None:
        """
        Start the application with C{alice} and C{bob} on a free port.
        """
        self.port = freePort()
        self.server = Process(
            [
                sys.executable,
                "-m",
                "tests._portalroot",
                f"tcp:{self.port}:interface=127.0.0.1",
                f"alice:{PASSWORD}",
                f"bob:{PASSWORD}",
                *options,
            ],
            self.dir / "root.log",
        )
        self.addCleanup(self.server.stop)
        self.server.start()
        await waitFor(
            lambda: f"listening on {self.port}" in self.server.output(),
            "the application",
        )

    async def stockLogin(self, user: str, password: str, source: int) -> Any:
        """
        Log in with Twisted's own PB client from 127.0.0.C{source}.

        @return: the perspective.
        """
        factory = pb.PBClientFactory()
        endpoint = TCP4ClientEndpoint(
            reactor,
            "127.0.0.1",
            self.port,
            timeout=10,
            bindAddress=(f"127.0.0.{source}", 0),
        )
        await endpoint.connect(factory)
        try:
            perspective = await factory.login(
                UsernamePassword(user.encode(), password.encode())
            )
            return await perspective.callRemote("whoami")
        finally:
            factory.disconnect()

    def attack(self, *args: str) -> Attacker:
        attacker = Attacker()
        argv = [
            sys.executable,
            "-m",
            "tests._bouncerattacker",
            "stock",
            "--port",
            str(self.port),
            *args,
        ]
        from ._procs import ENV, ROOT

        process = reactor.spawnProcess(
            attacker, sys.executable, argv, env=ENV, path=str(ROOT)
        )

        def kill() -> Deferred[None] | None:
            if attacker.ended.called:
                return None
            process.signalProcess("KILL")
            return attacker.ended

        self.addCleanup(kill)
        return attacker

    def test_stockLoginThrottled(self) -> Deferred[None]:
        """
        300 wrong MD5 logins for one account from 10 addresses, all at
        once: at most 5 are checked (the account limit), the rest are
        denied before any check, and then the right password is denied
        too, from the attacker's connection and from a fresh address, while
        another account logs in.  The root said at start-up that stock
        login is on; every refusal and denial is one audit line; no
        traceback.
        """

        async def go() -> None:
            await self.startRoot("--stock", "--throttle-account=5")
            self.assertEqual(await self.stockLogin("alice", PASSWORD, 199), b"alice")
            burst = self.attack(
                "--first=10",
                "--addresses=10",
                "--connections=3",
                "--user=alice",
                f"--password={PASSWORD}",
                "--wrong=300",
            )
            done = await burst.waitFor("done")
            await burst.ended
            counts = done["counts"]
            print(f"\n{self.id()}: {counts}, {done['seconds']:.2f} s, {done['right']}")
            self.assertEqual(sum(counts.values()), 300, counts)
            self.assertLessEqual(counts.get("UnauthorizedLogin", 0), 5, counts)
            self.assertGreaterEqual(counts.get(THROTTLED, 0), 295, counts)
            self.assertFalse(done["rightAccepted"])
            self.assertEqual(done["right"], THROTTLED)
            with self.assertRaises(Exception) as raised:
                await self.stockLogin("alice", PASSWORD, 250)
            self.assertIn("too many failed logins", str(raised.exception))
            self.assertEqual(await self.stockLogin("bob", PASSWORD, 251), b"bob")
            log = self.server.output()
            self.assertIn("stock PB login is on (stockLogin=True)", log)
            self.assertIn("MD5 challenge-response", log)
            self.assertIn("no channel binding", log)
            self.assertEqual(log.count("stock PB login of alice via app"), 1)
            self.assertEqual(log.count("stock PB login of bob via app"), 1)
            refused = log.count("keycard refused: ")
            denied = log.count(
                f"keycard {THROTTLED} ({STOCK_KIND} for alice via app from"
            )
            self.assertEqual(refused, counts.get("UnauthorizedLogin", 0))
            self.assertEqual(denied, counts.get(THROTTLED, 0) + 2)
            self.assertNotIn("Traceback", log)
            self.assertNotIn("Unhandled", log)

        return ensureDeferred(go())
