"""
Bouncer processes on several (simulated) hosts sharing one Redis: three
bouncers on 127.0.0.1, 127.0.0.2 and 127.0.0.3, each a twistd process on a
data directory made with C{keycard init --store redis://...}.  A token
issued by one logs in on the others; a revocation by the keycard command
drops the clients of all three; a pool of seats is never over-granted,
even while one bouncer is killed.
"""

from __future__ import annotations

import signal
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
from twisted_keycard.tokens import TokenAnswerer

from ._procs import Process, bouncer, freePort, keycard, reactor, started, waitFor
from ._redis import RedisServer

PASSWORD = "pool party"
#: Redis's own (a bouncer refuses a Redis that takes commands without one).
REDIS_PASSWORD = "redis for the pool"
HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
SEATS = 3
LEASE = 2.0
USERS = [f"u{i}" for i in range(12)]

pytestmark = pytest.mark.integration


class RedisBouncers(TestCase):
    """
    A Redis server, a data directory on it with users C{alice} and C{u0}
    to C{u11}, and bouncer processes, one per simulated host.
    """

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.redis = RedisServer(
            self.dir / "redis",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--requirepass",
            REDIS_PASSWORD,
        )
        self.redis.start()
        self.addCleanup(self.redis.stop)
        passwordFile = self.dir / "redis.password"
        passwordFile.write_text(REDIS_PASSWORD + "\n")
        passwordFile.chmod(0o600)
        self.data = self.dir / "data"
        made = keycard(
            "init",
            str(self.data),
            "--store",
            self.redis.url,
            "--store-password-file",
            str(passwordFile),
        )
        self.assertEqual(made.returncode, 0, made.stderr)
        for name in ["alice", *USERS]:
            added = keycard(
                "user", "add", "--data-dir", str(self.data), name, stdin=PASSWORD
            )
            self.assertEqual(added.returncode, 0, added.stderr)
        self.processes: dict[str, Process] = {}

    async def startBouncers(self, *options: str) -> list[tuple[str, int]]:
        addresses = []
        for host in HOSTS:
            port = freePort()
            process = bouncer(
                self.data,
                f"tcp:{port}:interface={host}",
                self.dir / f"{host}.log",
                "--name",
                host,
                *options,
            )
            self.addCleanup(process.stop)
            self.processes[host] = process
            await started(process, port)
            addresses.append((host, port))
        return addresses

    async def connect(self, address: tuple[str, int]) -> KeycardClientFactory:
        factory = KeycardClientFactory()
        broker: Any = await TCP4ClientEndpoint(reactor, *address).connect(factory)
        self.addCleanup(broker.transport.loseConnection)
        return factory


class SeveralHostsTests(RedisBouncers):
    def test_walkThrough(self) -> Deferred[None]:
        """
        Password on the first host, the token on the two others; the
        keycard command revokes the avatar, and every host drops its
        client and refuses the token.
        """

        async def go() -> None:
            addresses = await self.startBouncers()
            first = await (await self.connect(addresses[0])).loginWithKeycard(
                [SCRAMAnswerer("alice", PASSWORD)]
            )
            token = first.keycard.token
            assert token is not None
            logins = [first]
            for address in addresses[1:]:
                again = await (await self.connect(address)).loginWithKeycard(
                    [TokenAnswerer(token)]
                )
                self.assertEqual(again.keycard.bouncerName, address[0])
                logins.append(again)
            lost: list[float] = []
            for login in logins:
                login.perspective.notifyOnDisconnect(
                    lambda ref: lost.append(time.monotonic())
                )
            start = time.monotonic()
            revoked = keycard(
                "revoke", "--data-dir", str(self.data), "--avatar", "alice"
            )
            self.assertEqual(revoked.returncode, 0, revoked.stderr)
            await waitFor(lambda: len(lost) == 3, "every client dropped", timeout=10)
            sys.stderr.write(
                f"\nrevocation dropped 3 clients in {max(lost) - start:.3f}s\n"
            )
            for address in addresses:
                with self.assertRaises(KeycardRefused):
                    await (await self.connect(address)).login([TokenAnswerer(token)])

        return ensureDeferred(go())


class SeatRaceTests(RedisBouncers):
    async def race(self, addresses: list[tuple[str, int]]) -> list[KeycardLogin]:
        """
        Every user logs in at once, spread over C{addresses}.

        @return: the logins granted; the others must be told no seat is left.
        """
        factories = [
            await self.connect(addresses[i % len(addresses)]) for i in range(len(USERS))
        ]
        results: list[tuple[bool, Any]] = await DeferredList(
            [
                f.loginWithKeycard([SCRAMAnswerer(name, PASSWORD)])
                for f, name in zip(factories, USERS, strict=True)
            ],
            consumeErrors=True,
        )
        refused: list[Failure] = [r for ok, r in results if not ok]
        for failure in refused:
            self.assertTrue(failure.check(KeycardDenied), failure)
            self.assertIn("no seat left", failure.getErrorMessage())
        return [r for ok, r in results if ok]

    def test_poolNeverOverGranted(self) -> Deferred[None]:
        """
        Clients race for three seats on three bouncers: exactly three are
        granted.  One bouncer holding seats is killed while a second race
        runs on the others: only its seats can be granted again (once its
        lease runs out), never more; after the lease, the pool is full
        again with exactly three.
        """

        async def go() -> None:
            addresses = await self.startBouncers(
                "--seat-pool", "licenses", "--seats", str(SEATS),
                "--lease-time", str(LEASE),
            )  # fmt: skip
            live: set[int] = set()

            def track(logins: list[KeycardLogin]) -> None:
                for login in logins:
                    key = id(login)
                    live.add(key)
                    login.perspective.notifyOnDisconnect(
                        lambda ref, key=key: live.discard(key)
                    )

            first = await self.race(addresses)
            self.assertEqual(len(first), SEATS)
            track(first)
            victim = first[0].keycard.bouncerName
            assert victim is not None
            onVictim = [g for g in first if g.keycard.bouncerName == victim]
            others = [a for a in addresses if a[0] != victim]
            self.processes[victim].stop(signal.SIGKILL)
            await waitFor(lambda: len(live) == SEATS - len(onVictim), "the kill")
            second = await self.race(others)
            self.assertLessEqual(len(second), len(onVictim))
            track(second)
            self.assertLessEqual(len(live), SEATS)
            await deferLater(reactor, LEASE + 1.0, lambda: None)
            third = await self.race(others)
            track(third)
            self.assertEqual(len(live), SEATS)

        return ensureDeferred(go())
