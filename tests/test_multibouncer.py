"""
Several bouncer processes on one SQLite store: token failover, revocation
reaching the other process and its clients, a seat pool never over-granted
under a race, and no revocation lost when a bouncer is killed.
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
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from twisted_keycard import KeycardClientFactory, KeycardDenied, KeycardRefused
from twisted_keycard.pb._client import KeycardLogin
from twisted_keycard.scram import SCRAMAnswerer
from twisted_keycard.store.sqlite._store import SQLiteStore
from twisted_keycard.tokens import TokenAnswerer

from ._procs import (
    ENV,
    ROOT,
    Process,
    bouncer,
    freePort,
    keycard,
    reactor,
    started,
    waitFor,
)

PASSWORD = "pool party"

# Slow: runs bouncer processes on one store.
pytestmark = pytest.mark.integration


class BouncerProcesses(TestCase):
    """
    A data directory with users C{alice} and C{u0} to C{u9}, bouncer
    processes on it, and clients; the tests are in subclasses.
    """

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        self.data = self.dir / "data"
        self.assertEqual(keycard("init", str(self.data)).returncode, 0)
        for name in ["alice"] + [f"u{i}" for i in range(10)]:
            added = keycard(
                "user", "add", "--data-dir", str(self.data), name, stdin=PASSWORD
            )
            self.assertEqual(added.returncode, 0, added.stderr)

    async def startBouncer(
        self, name: str, *options: str, log: str | None = None
    ) -> tuple[Process, int]:
        port = freePort()
        process = bouncer(
            self.data,
            f"tcp:{port}:interface=127.0.0.1",
            self.dir / f"{log or name}.log",
            "--name",
            name,
            *options,
        )
        self.addCleanup(process.stop)
        await started(process, port)
        return process, port

    async def startBouncers(self, *options: str) -> list[int]:
        return [(await self.startBouncer(name, *options))[1] for name in ("one", "two")]

    async def connect(self, port: int) -> KeycardClientFactory:
        factory = KeycardClientFactory()
        broker: Any = await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(
            factory
        )
        self.addCleanup(broker.transport.loseConnection)
        return factory


class MultiBouncerTests(BouncerProcesses):
    def test_tokenFailover(self) -> Deferred[None]:
        """
        A token issued by one bouncer logs in on the other.
        """

        async def go() -> None:
            one, two = await self.startBouncers()
            login = await (await self.connect(one)).loginWithKeycard(
                [SCRAMAnswerer("alice", PASSWORD)]
            )
            assert login.keycard.token is not None
            self.assertEqual(login.keycard.bouncerName, "one")
            again = await (await self.connect(two)).loginWithKeycard(
                [TokenAnswerer(login.keycard.token)]
            )
            self.assertEqual(again.keycard.avatarId, "alice")
            self.assertEqual(again.keycard.bouncerName, "two")

        return ensureDeferred(go())

    def test_revocationReachesOtherProcess(self) -> Deferred[None]:
        """
        A keycard revoked by another process (the keycard command) is
        dropped by the bouncer whose client holds it, and its token is
        refused by both bouncers.
        """

        async def go() -> None:
            one, two = await self.startBouncers()
            factory = await self.connect(two)
            login = await factory.loginWithKeycard([SCRAMAnswerer("alice", PASSWORD)])
            lost: list[float] = []
            login.perspective.notifyOnDisconnect(
                lambda ref: lost.append(time.monotonic())
            )
            assert login.keycard.id is not None and login.keycard.token is not None
            revoked = keycard("revoke", "--data-dir", str(self.data), login.keycard.id)
            self.assertEqual(revoked.returncode, 0, revoked.stderr)
            start = time.monotonic()
            await waitFor(lambda: lost, "the client to be dropped", timeout=10)
            self.latency = lost[0] - start
            sys.stderr.write(
                f"\nrevocation reached the client in {self.latency:.2f}s\n"
            )
            token = login.keycard.token
            for port in (one, two):
                # Each bouncer reads the revocation within its follow
                # interval; until then its mirror may still take the token.
                deadline = time.monotonic() + 10
                while True:
                    factory = await self.connect(port)
                    try:
                        await factory.login([TokenAnswerer(token)])
                    except KeycardRefused:
                        break
                    finally:
                        factory.disconnect()
                    if time.monotonic() > deadline:
                        self.fail(f"bouncer on {port} still takes the token")
                    await deferLater(reactor, 0.1, lambda: None)

        return ensureDeferred(go())

    def test_seatPoolRace(self) -> Deferred[None]:
        """
        Ten clients race for a pool of three seats on two bouncers: exactly
        three get one, the others are told no seat is left.
        """

        async def go() -> None:
            ports = await self.startBouncers("--seat-pool", "licenses", "--seats", "3")
            factories = [await self.connect(ports[i % 2]) for i in range(10)]
            attempts = [
                f.loginWithKeycard([SCRAMAnswerer(f"u{i}", PASSWORD)])
                for i, f in enumerate(factories)
            ]
            results: list[tuple[bool, Any]] = await DeferredList(
                attempts, consumeErrors=True
            )
            granted = [r for ok, r in results if ok]
            refused: list[Failure] = [r for ok, r in results if not ok]
            self.assertEqual(len(granted), 3, refused)
            for failure in refused:
                self.assertTrue(failure.check(KeycardDenied), failure)
                self.assertIn("no seat left", failure.getErrorMessage())
            self.assertTrue(all(isinstance(g, KeycardLogin) for g in granted))

        return ensureDeferred(go())

    def test_noRevocationLostOnKill(self) -> Deferred[None]:
        """
        A bouncer killed with SIGKILL while issuing and revoking loses no
        revocation: every token it revoked before the kill is refused by a
        bouncer started afterwards on the same store.
        """

        async def go() -> None:
            path = str(self.dir / "crash.db")
            child = subprocess.Popen(
                [sys.executable, str(ROOT / "tests" / "_crashbouncer.py"), path],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=ENV,
            )
            assert child.stdout is not None and child.stderr is not None
            revoked: list[str] = []
            for line in child.stdout:
                if line.startswith("REVOKED "):
                    revoked.append(line.split()[1])
                    if len(revoked) >= 20:
                        break
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()
            child.stderr.close()
            self.assertEqual(len(revoked), 20)
            from twisted_keycard import Bouncer
            from twisted_keycard.bouncer._settings import TokenPolicy
            from twisted_keycard.tokens import TokenKeycard

            store = await SQLiteStore.open(path)
            self.addCleanup(store.close)
            after = Bouncer([], store, clock=reactor, tokens=TokenPolicy())
            for token in revoked:
                with self.assertRaises(KeycardRefused):
                    await after.authenticate(
                        TokenKeycard(presented=token, requesterName="r")
                    )

        return ensureDeferred(go())
