"""
The queue of a seat pool with a bouncer process and real clients: clients
waiting in the queue keep their places, in order, across a restart of the
bouncer (they come back with their tickets); a holder whose host freezes
(its process stopped with SIGSTOP) loses its seat within 3 heartbeats, and
the seat goes to the head of the queue, not to a newcomer.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint

from twisted_keycard import KeycardDenied
from twisted_keycard.pb import KeycardClientService, KeycardLogin, reconnectPolicy
from twisted_keycard.scram import SCRAMAnswerer

from . import test_seat_health as health
from ._procs import ENV, ROOT, Process, keycard, reactor, waitFor
from .test_multibouncer import PASSWORD

# Slow: runs a bouncer process and a client process.
pytestmark = pytest.mark.integration

HEARTBEAT = health.HEARTBEAT

#: The bouncer's options: a pool of one seat, a queue, heartbeats.
OPTIONS = (
    "--seat-pool",
    "licenses",
    "--seats",
    "1",
    "--seat-queue",
    "5",
    "--seat-queue-grace",
    "30",
    "--heartbeat",
    str(HEARTBEAT),
)


class Waiter:
    """
    A client in the test's process that waits for a seat: a
    L{KeycardClientService}, which reconnects with its ticket.
    """

    def __init__(
        self,
        port: int,
        user: str,
        host: str = "127.0.0.1",
        password: str = PASSWORD,
    ) -> None:
        self.user = user
        self.places: list[tuple[int, int]] = []
        self.logins: list[KeycardLogin] = []
        self.service = KeycardClientService(
            TCP4ClientEndpoint(reactor, host, port),
            [SCRAMAnswerer(user, password)],
            onLogin=self.logins.append,
            retryPolicy=reconnectPolicy(maxDelay=0.5, initialDelay=0.1),
            waitForSeat=600.0,
            onPlace=lambda place, waiting: self.places.append((place, waiting)),
        )
        self.service.startService()

    def stop(self) -> Deferred[None]:
        if not self.service.running:
            return succeed(None)
        return self.service.stopService()


# Through its module, so that the parent's tests are not collected here.
class SeatQueueProcessTests(health.SeatHealthProcessTests):
    # Only the tests below; the parent's are run in their own module.
    test_frozenHolderLosesSeat = None  # type: ignore[assignment]
    test_seatsPerAvatar = None  # type: ignore[assignment]
    test_seatsPerAvatarRace = None  # type: ignore[assignment]

    def waiter(self, port: int, user: str) -> Waiter:
        waiter = Waiter(port, user)
        self.addCleanup(waiter.stop)
        return waiter

    async def restart(self, process: Process, port: int) -> None:
        process.stop()
        mark = len(process.output())
        process.start()
        await waitFor(
            lambda: f"starting on {port}" in process.output()[mark:],
            "the bouncer to start again",
        )

    def test_restartKeepsPlaces(self) -> Deferred[None]:
        """
        Two clients queued behind a holder keep their order across a
        restart of the bouncer: the head takes the seat the holder lost
        with its connection, the other stays queued, now the head.
        """

        async def go() -> None:
            process, port = await self.startBouncer("one", *OPTIONS)
            await self.holder(port, "u0")
            first = self.waiter(port, "u1")
            await waitFor(lambda: first.places == [(1, 1)], "u1 queued")
            second = self.waiter(port, "u2")
            await waitFor(lambda: (2, 2) in second.places, "u2 queued")
            self.assertEqual((first.logins, second.logins), ([], []))
            await self.restart(process, port)
            await waitFor(lambda: first.logins, "u1 seated after the restart")
            await waitFor(lambda: second.places[-1] == (1, 1), "u2 the head")
            self.assertEqual(second.logins, [])
            self.assertEqual(second.places[0], (2, 2))
            self.assertNotIn((1, 2), second.places[:-1])
            # A newcomer finds the pool full, the head waiting.
            with self.assertRaises(KeycardDenied):
                await self.login(port, SCRAMAnswerer("u3", PASSWORD))

        return ensureDeferred(go())

    def test_frozenHolderSeatToHead(self) -> Deferred[None]:
        """
        The seat of a holder stopped with SIGSTOP goes, within 3
        heartbeats (and a margin for a loaded machine), to the head of the
        queue; the next waiter moves up and waits.
        """

        async def go() -> None:
            _, port = await self.startBouncer("one", *OPTIONS)
            holder = await self.holder(port, "u0")
            first = self.waiter(port, "u1")
            await waitFor(lambda: first.places == [(1, 1)], "u1 queued")
            second = self.waiter(port, "u2")
            await waitFor(lambda: (2, 2) in second.places, "u2 queued")
            holder.proc.send_signal(signal.SIGSTOP)
            stopped = time.monotonic()
            await waitFor(
                lambda: first.logins, "u1 seated", timeout=health.FREED_DEADLINE
            )
            took = time.monotonic() - stopped
            await waitFor(lambda: second.places[-1] == (1, 1), "u2 the head")
            self.assertEqual(second.logins, [])
            log = (self.dir / "one.log").read_text()
            self.assertEqual(log.count("no answer to 3 heartbeats in 3 s"), 1, log)
            print(f"frozen holder's seat went to the head after {took:.1f} s")

        return ensureDeferred(go())

    def test_twoBouncersServeOneQueue(self) -> Deferred[None]:
        """
        Two bouncers on one store serve one queue, first come, first
        served: waiters queued in turn on either bouncer get the seat in
        the order they queued, each once the one before leaves, never two
        at once.
        """

        async def go() -> None:
            one, two = await self.startBouncers(*OPTIONS)
            holder = await self.holder(one, "u0")
            waiters = []
            for i, port in enumerate([one, two, one], 1):
                waiters.append(self.waiter(port, f"u{i}"))
                queued = waiters[-1]
                await waitFor(
                    lambda q=queued, i=i: (i, i) in q.places,
                    f"u{i} queued",
                )
            holder.stop()
            for i, waiter in enumerate(waiters):
                took = await waitFor(
                    lambda w=waiter: bool(w.logins),
                    f"u{i + 1} seated",
                )
                print(f"u{i + 1} seated {took:.2f} s after the seat was freed")
                others = [w.user for w in waiters if w.logins and w is not waiter]
                self.assertEqual(others, [], f"u{i + 1} seated with {others}")
                for behind in waiters[i + 1 :]:
                    self.assertEqual(behind.logins, [])
                await waiter.stop()
                waiter.logins.clear()

        return ensureDeferred(go())

    def test_keycardLoginWaits(self) -> Deferred[None]:
        """
        C{keycard login --wait-for-seat} prints its place, then logs in
        once the holder leaves; with a shorter wait it exits 1 with one
        line naming its place.
        """

        async def go() -> None:
            _, port = await self.startBouncer("one", *OPTIONS)
            holder = await self.holder(port, "u0")
            connect = f"tcp:127.0.0.1:{port}"
            late = keycard(
                "login", "--connect", connect, "u2", "--wait-for-seat", "2",
                stdin=PASSWORD,
            )  # fmt: skip
            self.assertEqual(late.returncode, 1, late.stderr)
            self.assertEqual(
                late.stdout,
                "waiting for a seat in pool 'licenses': place 1 of 1\n"
                "keycard: login denied: no seat within 2 s: place 1 of 1\n",
            )
            log = self.dir / "u1-login.log"
            with open(log, "wb") as out:
                waiting = subprocess.Popen(
                    [
                        sys.executable, "-m", "twisted_keycard.admin", "login",
                        "--connect", connect, "u1", "--wait-for-seat", "60",
                    ],
                    stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                    env=ENV, cwd=ROOT,
                )  # fmt: skip
            self.addCleanup(waiting.kill)
            assert waiting.stdin is not None
            waiting.stdin.write(PASSWORD.encode("utf-8"))
            waiting.stdin.close()
            await waitFor(lambda: "place 1 of 1" in log.read_text(), "u1 queued")
            holder.stop()
            await waitFor(lambda: waiting.poll() is not None, "u1 logged in")
            self.assertEqual(waiting.returncode, 0, log.read_text())
            lines = log.read_text().splitlines()
            self.assertEqual(
                lines[0], "waiting for a seat in pool 'licenses': place 1 of 1"
            )
            self.assertEqual(lines[1], "avatar id:  u1")

        return ensureDeferred(go())
