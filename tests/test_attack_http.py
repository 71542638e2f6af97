"""
Attack suite, issue 23 findings 2 and 9: connections against the HTTP face
(C{--http}) and against one client address, on a real bouncer with a soft
limit of 1,024 open files: idle HTTP connections that would take the PB
face's file descriptors, slowloris request heads, a header line over the
limit; a client address full of idle PB connections, and a real client
from it; a client refused for a cap, told why in one line.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from twisted.internet.defer import Deferred, ensureDeferred

from twisted_keycard.pb import TOO_MANY, ConnectionLimits

from ._attack import PASSWORD, TRACEBACK_MARKERS, AttackCase, openSockets
from ._procs import Process, freePort, keycard, waitFor
from .test_attack_connections import MARGIN, stillOpen

pytestmark = pytest.mark.integration

#: The default cap on connections not logged in per client address.
PER_ADDRESS = ConnectionLimits().maxUnauthenticatedPerAddress or 0

#: Connections a Twisted listening port accepts in one reactor turn, to
#: begin with (its C{numberAccepts}, which grows by 20 after a full turn).
ACCEPT_BATCH = 100

#: The request deadline the slowloris attack is run against, in seconds.
REQUEST_TIMEOUT = 3.0


class HTTPAttackCase(AttackCase):
    async def startWithHTTP(self, *options: str) -> None:
        """
        Start the bouncer with its HTTP face on a second loopback port.
        """
        self.httpPort = freePort()
        await self.startBouncer(
            "--http", f"tcp:{self.httpPort}:interface=127.0.0.1", *options
        )
        await waitFor(
            lambda: f"starting on {self.httpPort}" in self.serverLog(), "the HTTP face"
        )

    def httpAttacker(self, mode: str, *options: str) -> Process:
        """
        A hostile peer against the HTTP face.
        """
        process = Process(
            [
                sys.executable,
                "-m",
                "tests._attacker",
                mode,
                str(self.httpPort),
                *options,
            ],
            self.dir / f"attacker-http-{mode}.log",
        )
        self.addCleanup(process.stop)
        process.start()
        return process

    def assertNoTraceback(self) -> None:
        log = self.serverLog()
        for marker in TRACEBACK_MARKERS:
            self.assertNotIn(marker, log)

    async def reported(self, attacker: Process) -> None:
        """
        Wait until a one-shot attacker has written its statistics.
        """
        await waitFor(lambda: '"closedAfter"' in attacker.output(), "the attack", 60.0)

    def keycardLogin(self) -> tuple[subprocess.CompletedProcess[str], float]:
        """
        C{keycard login} as alice, from 127.0.0.1, as a user runs it.
        """
        start = time.monotonic()
        result = keycard(
            "login",
            "--connect",
            f"tcp:127.0.0.1:{self.port}",
            "--timeout",
            "10",
            "alice",
            stdin=PASSWORD + "\n",
        )
        return result, time.monotonic() - start


class HTTPConnectionTests(HTTPAttackCase):
    def test_idleHTTPConnections(self) -> Deferred[None]:
        """
        (a) 1,100 idle HTTP connections from eleven addresses: the server
        holds at most its cap per address of them (the budget it shares
        with the PB face), and a PB login from a fresh address works.
        """

        async def go() -> None:
            await self.startWithHTTP()
            addresses = 11
            attacker = self.httpAttacker(
                "idle", "--connections", "1100", "--sources", f"10-{9 + addresses}"
            )
            await self.ready(attacker, timeout=60.0)
            held = openSockets(self.pid)
            took = await self.loginDuringAttack()
            held = max(held, openSockets(self.pid))
            stats = await self.finished(attacker)
            self.report(
                "http-idle", loginSeconds=round(took, 3), serverSockets=held, **stats
            )
            self.assertHealthy()
            # Sixteen per address, two listeners, the legitimate client's,
            # and those closed for newer ones but not yet gone: an aborted
            # socket closes in the reactor's next turn, and a listening
            # port accepts a batch of connections (ACCEPT_BATCH, and more
            # under a flood) in one: far below the 1,024 open files.
            self.assertLessEqual(held, PER_ADDRESS * addresses + 2 * ACCEPT_BATCH)
            self.assertEqual(stats["connections"], 1100)

        return ensureDeferred(go())

    def test_slowloris(self) -> Deferred[None]:
        """
        (b) 300 HTTP connections that send their request head one byte a
        second: the request deadline closes every one, though no login
        deadline is set and the bytes keep coming.
        """

        async def go() -> None:
            await self.startWithHTTP(
                "--login-timeout",
                "0",
                "--http-request-timeout",
                str(REQUEST_TIMEOUT),
            )
            attacker = self.httpAttacker(
                "slowloris",
                "--connections",
                "300",
                "--sources",
                "10-29",
                "--interval",
                "1",
            )
            await self.ready(attacker)
            start = time.monotonic()
            took = await self.loginDuringAttack()
            closed = await self.within(
                lambda: stillOpen(attacker.output()) == 0, REQUEST_TIMEOUT + MARGIN
            )
            closedAfter = time.monotonic() - start
            stats = await self.finished(attacker)
            self.report(
                "http-slowloris",
                loginSeconds=round(took, 3),
                allClosedWithin=round(closedAfter, 1) if closed else None,
                **stats,
            )
            self.assertHealthy()
            self.assertTrue(closed, "slowloris connections still open")
            self.assertEqual(stats["dropped"], 300)
            self.assertIn("no whole request within", self.serverLog())

        return ensureDeferred(go())

    def test_longHeaderLine(self) -> Deferred[None]:
        """
        (c) A 17 KiB header line, ended or not, gets a 400 and the
        connection closed at once.
        """

        async def go() -> None:
            await self.startWithHTTP()
            for variant in ([], ["--unterminated"]):
                attacker = self.httpAttacker("longline", "--duration", "25", *variant)
                await self.reported(attacker)
                stats = await self.finished(attacker)
                self.report("http-long-line", variant=variant, **stats)
                self.assertEqual(stats["status"], "HTTP/1.1 400 Bad Request", variant)
                self.assertIsNotNone(stats["closedAfter"], variant)
                self.assertLess(stats["closedAfter"], 5.0, variant)
            self.assertNoTraceback()

        return ensureDeferred(go())


class SameAddressTests(HTTPAttackCase):
    def test_crowdedAddress(self) -> Deferred[None]:
        """
        (d) 60 idle PB connections from 127.0.0.1, six of them with an
        unfinished message: a real C{keycard login} from 127.0.0.1 still
        gets in while they are held (within its C{--timeout} of 10 s); the
        address's oldest idle connection makes room.  How long it took,
        process start included, is printed and reported as a figure, not
        bounded: 0.7 to 2 s here, 5.1 s once with four runs of the suite
        and C{stress-ng} on two cores, most of it the process's start.
        """

        async def go() -> None:
            await self.startBouncer()
            attacker = self.attacker(
                "idle",
                "--connections",
                "60",
                "--sources",
                "127.0.0.1",
                "--unfinished",
                "6",
            )
            await self.ready(attacker)
            result, took = self.keycardLogin()
            holding = attacker.proc is not None and attacker.proc.poll() is None
            stats = await self.finished(attacker)
            self.report(
                "same-address",
                keycardLoginSeconds=round(took, 3),
                keycardLoginStatus=result.returncode,
                **stats,
            )
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            self.assertIn("avatar id:  alice", result.stdout)
            print(f"\n{self.id()}: keycard login took {took:.2f} s")
            # The attack still held its connections: the login got in
            # beside them, not after them.
            self.assertTrue(holding, "the attacker ended before the login")
            self.assertNoTraceback()

        return ensureDeferred(go())

    def test_refusedTold(self) -> Deferred[None]:
        """
        (e) With the server full of idle connections from 127.0.0.1, a
        client from there is refused, and told so in one line: C{keycard
        login} prints it (not C{ConnectionDone}), and an HTTP client gets a
        503 saying it, with C{Retry-After}.
        """

        async def go() -> None:
            await self.startWithHTTP(
                "--max-unauthenticated", "4", "--login-timeout", "0"
            )
            attacker = self.attacker(
                "idle", "--connections", "4", "--sources", "127.0.0.1"
            )
            await self.ready(attacker)
            result, _ = self.keycardLogin()
            output = result.stdout + result.stderr
            curl = subprocess.run(
                [
                    "curl",
                    "-s",
                    "-i",
                    "--max-time",
                    "10",
                    f"http://127.0.0.1:{self.httpPort}/whoami",
                ],
                capture_output=True,
                timeout=30,
                check=False,
            )
            response = curl.stdout.decode("utf-8", "replace")
            stats = await self.finished(attacker)
            self.report(
                "refused",
                keycardOutput=output.strip(),
                httpStatus=response.split("\r\n", 1)[0],
                **stats,
            )
            self.assertNotEqual(result.returncode, 0)
            self.assertEqual(
                output.strip(), f"keycard: login denied: {TOO_MANY}", output
            )
            self.assertTrue(
                response.startswith("HTTP/1.1 503 Service Unavailable\r\n"),
                response,
            )
            self.assertIn("\r\nRetry-After: 10\r\n", response)
            self.assertTrue(response.endswith(f"\r\n\r\n{TOO_MANY}\n"), response)
            self.assertNoTraceback()

        return ensureDeferred(go())
