"""
Seat pools of a bouncer process, with real clients: a holder whose host
freezes (its process stopped with SIGSTOP) loses its seat within 3
heartbeats and the next client gets it; an avatar holds no more than its
share of a pool (C{--seats-per-avatar}), even when its clients race on two
bouncers.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.python.failure import Failure

from twisted_keycard import KeycardDenied
from twisted_keycard.scram import SCRAMAnswerer

from . import test_multibouncer_upkeep as upkeep
from ._procs import ENV, ROOT, TIMEOUT, waitFor
from .test_multibouncer import PASSWORD

# Slow: runs a bouncer process and client processes.
pytestmark = pytest.mark.integration

#: Seconds between heartbeats in these tests.
HEARTBEAT = 1.0

#: Seconds a stopped holder's seat may take to be freed, at most: 3
#: heartbeats, and a generous margin for a loaded machine (the login that
#: finds the seat, polled every quarter second).
FREED_DEADLINE = 3 * HEARTBEAT + 7.0


class SeatHolder:
    """
    A client process (L{tests._seatholder}) holding a seat.
    """

    def __init__(self, port: int, user: str, log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests._seatholder", str(port), user],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=ENV,
                cwd=ROOT,
            )
        assert self.proc.stdin is not None
        self.proc.stdin.write(PASSWORD.encode("utf-8"))
        self.proc.stdin.close()

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(TIMEOUT)


# Through its module, so that the parent's tests are not collected here.
class SeatHealthProcessTests(upkeep.UpkeepProcessTests):
    # Only the tests below; the parent's are run in their own module.
    test_keyRotationFollowed = None  # type: ignore[assignment]
    test_seatOfKilledBouncer = None  # type: ignore[assignment]
    test_restartFreesKilledSeat = None  # type: ignore[assignment]

    async def holder(self, port: int, user: str) -> SeatHolder:
        holder = SeatHolder(port, user, self.dir / f"{user}.log")
        self.addCleanup(holder.stop)
        await waitFor(lambda: "seated " in holder.output(), f"{user} seated")
        return holder

    def test_frozenHolderLosesSeat(self) -> Deferred[None]:
        """
        A holder that answers its heartbeats keeps its seat; stopped with
        SIGSTOP, it is dropped within 3 heartbeats (one C{keycard.dropped}
        line), and a waiting client gets the seat.
        """

        async def go() -> None:
            _, port = await self.startBouncer(
                "one",
                "--seat-pool",
                "licenses",
                "--seats",
                "1",
                "--heartbeat",
                str(HEARTBEAT),
            )
            holder = await self.holder(port, "u0")
            # Alive for 5 heartbeats: the seat stays its own.
            start = time.monotonic()
            while time.monotonic() - start < 5 * HEARTBEAT:
                with self.assertRaises(KeycardDenied):
                    await self.login(port, SCRAMAnswerer("u1", PASSWORD))
            holder.proc.send_signal(signal.SIGSTOP)
            stopped = time.monotonic()

            async def seated() -> bool:
                try:
                    await self.login(port, SCRAMAnswerer("u1", PASSWORD), keep=True)
                except KeycardDenied:
                    return False
                return True

            await upkeep.eventually(seated, "the frozen holder's seat", FREED_DEADLINE)
            took = time.monotonic() - stopped
            log = (self.dir / "one.log").read_text()
            self.assertEqual(log.count("no answer to 3 heartbeats in 3 s"), 1, log)
            with self.assertRaises(KeycardDenied):
                await self.login(port, SCRAMAnswerer("u2", PASSWORD))
            print(f"frozen holder's seat freed after {took:.1f} s")

        return ensureDeferred(go())

    def test_seatsPerAvatar(self) -> Deferred[None]:
        """
        With C{--seats-per-avatar 1}, a second client of one avatar is
        denied, saying why, while another avatar gets a seat of the pool.
        """

        async def go() -> None:
            _, port = await self.startBouncer(
                "one",
                "--seat-pool",
                "licenses",
                "--seats",
                "3",
                "--seats-per-avatar",
                "1",
            )
            await self.login(port, SCRAMAnswerer("u0", PASSWORD), keep=True)
            with self.assertRaises(KeycardDenied) as denied:
                await self.login(port, SCRAMAnswerer("u0", PASSWORD))
            self.assertEqual(
                str(denied.exception),
                "too many seats of pool 'licenses' for this avatar",
            )
            await self.login(port, SCRAMAnswerer("u1", PASSWORD), keep=True)

        return ensureDeferred(go())

    def test_seatsPerAvatarRace(self) -> Deferred[None]:
        """
        Ten clients of one avatar race for a pool of ten seats on two
        bouncers sharing a store, under C{--seats-per-avatar 2}: exactly
        two get a seat, the others are told why; another avatar still gets
        one.
        """

        async def go() -> None:
            ports = await self.startBouncers(
                "--seat-pool",
                "licenses",
                "--seats",
                "10",
                "--seats-per-avatar",
                "2",
            )
            factories = [await self.connect(ports[i % 2]) for i in range(10)]
            attempts = [
                f.loginWithKeycard([SCRAMAnswerer("u0", PASSWORD)]) for f in factories
            ]
            results: list[tuple[bool, Any]] = await DeferredList(
                attempts, consumeErrors=True
            )
            granted = [r for ok, r in results if ok]
            refused: list[Failure] = [r for ok, r in results if not ok]
            self.assertEqual(len(granted), 2, refused)
            for failure in refused:
                self.assertTrue(failure.check(KeycardDenied), failure)
                self.assertEqual(
                    failure.getErrorMessage(),
                    "too many seats of pool 'licenses' for this avatar",
                )
            other = await self.connect(ports[1])
            await other.loginWithKeycard([SCRAMAnswerer("u1", PASSWORD)])

        return ensureDeferred(go())
