"""
Tests for L{twisted_keycard.store.redis.RedisStore} when Redis goes away:
a redis-server (AOF, fsync at every write) SIGKILLed and started again
under load loses no acknowledged revocation and over-grants no seat; while
it is down, revocation checks fail closed (or open, if asked), issue
records are queued and written once it is back, and seats are refused.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from twisted_keycard.error import QuotaExceeded
from twisted_keycard.store import Revocation
from twisted_keycard.store._interfaces import RECONNECTED
from twisted_keycard.store.redis import RedisStore, StoreUnavailable

from ._procs import bouncer, freePort, keycard, started, waitFor
from ._redis import RedisServer, reactor
from .storecontract import record

pytestmark = pytest.mark.integration

DURABLE = ("--appendonly", "yes", "--appendfsync", "always")
SEATS = 3


class OutageTests(TestCase):
    def setUp(self) -> None:
        self.server = RedisServer(Path(self.mktemp()).resolve(), *DURABLE)
        self.server.start()
        self.addCleanup(self.server.stop)

    async def open(self, **kw: Any) -> RedisStore:
        store: RedisStore = await RedisStore.open(self.server.url, reactor, **kw)
        self.addCleanup(store.close)
        return store

    async def restart(self, *stores: RedisStore) -> None:
        self.server.start()
        await waitFor(
            lambda: all(s.reachable for s in stores), "the stores to reconnect"
        )

    def test_killedUnderLoad(self) -> Deferred[None]:
        """
        Revocations and seat grants run in a loop from two stores while
        Redis is killed and restarted: every revocation acknowledged before
        the kill is there after it, and the pool never holds more than its
        seats.
        """

        async def go() -> None:
            one, two = await self.open(), await self.open()
            now = reactor.seconds()
            acknowledged: list[str] = []
            granted: list[str] = []
            running = [True]
            ids = itertools.count()

            async def revoking(store: RedisStore) -> None:
                while running[0]:
                    keycardId = f"r{next(ids)}"
                    try:
                        await store.revoke([Revocation(keycardId, now + 600, now)])
                    except StoreUnavailable:
                        await deferLater(reactor, 0.01, lambda: None)
                        continue
                    acknowledged.append(keycardId)

            async def seating(store: RedisStore) -> None:
                while running[0]:
                    keycardId = f"s{next(ids)}"
                    seat = record(
                        keycardId,
                        avatarId=keycardId,
                        seatPool="pool",
                        issued=reactor.seconds(),
                        expires=reactor.seconds() + 600,
                    )
                    try:
                        await store.addWithin(seat, None, SEATS)
                    except (QuotaExceeded, StoreUnavailable):
                        await deferLater(reactor, 0.01, lambda: None)
                        continue
                    granted.append(keycardId)

            loops = [
                ensureDeferred(work(store))
                for store in (one, two)
                for work in (revoking, seating)
            ]
            await waitFor(lambda: len(acknowledged) >= 50, "revocations")
            self.server.kill()
            before = list(acknowledged)
            await deferLater(reactor, 0.3, lambda: None)
            await self.restart(one, two)
            count = len(acknowledged)
            await waitFor(lambda: len(acknowledged) >= count + 50, "more revocations")
            running[0] = False
            await DeferredList(loops)
            checker = await self.open()
            for keycardId in before + acknowledged:
                self.assertTrue(await checker.isRevoked(keycardId), keycardId)
            self.assertEqual(len(granted), SEATS)
            held = await checker.expiredBefore(float("inf"))
            self.assertEqual(sorted(r.keycardId for r in held), sorted(granted))

        return ensureDeferred(go())

    def test_whileDown(self) -> Deferred[None]:
        """
        While Redis is down, revocation checks fail (or say "not revoked"
        on a store that accepts tokens then), seats are refused, and issue
        records are queued, then written in order once it is back; its
        subscribers hear that it is back.  The store says it is down, and
        how many writes it queued, meanwhile (L{IStoreHealth}).
        """

        def now(keycardId: str, **kw: Any) -> Any:
            issued = reactor.seconds()
            return record(keycardId, issued=issued, expires=issued + 600, **kw)

        async def go() -> None:
            store = await self.open()
            lenient = await self.open(tokensWhenDown="accept")
            await store.add(now("gone"))
            heard: list[str] = []
            store.subscribe(heard.append)
            self.server.kill()
            await waitFor(
                lambda: not store.reachable and not lenient.reachable, "the outage"
            )
            with self.assertRaises(StoreUnavailable):
                await store.isRevoked("k1")
            with self.assertRaises(StoreUnavailable):
                await store.revoke([Revocation("k1", 200.0, 100.0)])
            self.assertFalse(await lenient.isRevoked("k1"))
            self.assertEqual(await lenient.revocationsOf(["k1"]), [])
            with self.assertRaises(StoreUnavailable):
                await store.addWithin(now("seat", seatPool="p"), None, 1)
            await store.add(now("k1"))
            await store.remove("gone")
            await store.add(now("k2"))
            # What the metrics read: down, with the three writes queued.
            self.assertIs(store.storeUp(), False)
            self.assertEqual(store.writesQueued(), 3)
            await self.restart(store, lenient)
            await waitFor(lambda: not len(store._queue), "the queued writes")
            self.assertIs(store.storeUp(), True)
            self.assertEqual(store.writesQueued(), 0)
            # Notices were missed meanwhile: followers read from their cursor.
            await waitFor(lambda: RECONNECTED in heard, "the notice of reconnection")
            self.assertEqual(
                [r.keycardId for r in await lenient.byAvatar("alice")], ["k1", "k2"]
            )

        return ensureDeferred(go())


PASSWORD = "correct horse battery staple"


class TokensWhileDownTests(TestCase):
    """
    Two bouncer services on one Redis, one with the default
    C{--tokens-when-store-down refuse}, one with C{accept}: with Redis
    killed, the first denies token logins (issue 24: both accepted them),
    the second takes them, both take passwords; once Redis is back, both
    take tokens again; each logs the outage in one line, no traceback.
    """

    def test_refuseOrAccept(self) -> Deferred[None]:
        base = Path(self.mktemp()).resolve()
        server = RedisServer(base / "redis", *DURABLE)
        server.start()
        self.addCleanup(server.stop)
        data = base / "data"
        made = keycard("init", str(data), "--store", server.url)
        self.assertEqual(made.returncode, 0, made.stderr)
        added = keycard(
            "user", "add", "--data-dir", str(data), "alice", stdin=PASSWORD + "\n"
        )
        self.assertEqual(added.returncode, 0, added.stderr)
        ports = {"refuse": freePort(), "accept": freePort()}
        bouncers = {
            setting: bouncer(
                data,
                f"tcp:{port}:interface=127.0.0.1",
                base / f"{setting}.log",
                "--insecure-redis",
                "--name",
                setting,
                "--tokens-when-store-down",
                setting,
            )
            for setting, port in ports.items()
        }
        for process in bouncers.values():
            self.addCleanup(process.stop)
        token = base / "alice.token"

        def login(setting: str, *args: str) -> Any:
            connect = f"tcp:127.0.0.1:{ports[setting]}"
            return keycard("login", "--connect", connect, *args, stdin=PASSWORD + "\n")

        async def go() -> None:
            for setting, process in bouncers.items():
                await started(process, ports[setting])
            first = login("refuse", "alice", "--save-token", str(token))
            self.assertEqual(first.returncode, 0, first.stderr)
            server.kill()
            # Refused once three follow intervals (a second each) pass
            # with no read.
            tries: list[Any] = []

            def refusedNow() -> bool:
                tries.append(login("refuse", "--token-file", str(token)))
                return bool(tries[-1].returncode)

            await waitFor(refusedNow, "token logins to be refused")
            refused = tries[-1]
            self.assertEqual(refused.returncode, 1)
            self.assertEqual(
                refused.stdout,
                "keycard: login denied: token logins are refused while the store"
                " is unreachable; try again later\n",
            )
            accepted = login("accept", "--token-file", str(token))
            self.assertEqual(accepted.returncode, 0, accepted.stderr)
            for setting in ports:
                password = login(setting, "alice")
                self.assertEqual(password.returncode, 0, password.stderr)
            server.start()
            await waitFor(
                lambda: login("refuse", "--token-file", str(token)).returncode == 0,
                "token logins again",
            )
            for setting, process in bouncers.items():
                # Each bouncer is back after its own reconnection backoff.
                await waitFor(
                    lambda process=process: (
                        "following the store works again" in process.output()
                    ),
                    f"the {setting} bouncer to follow the store again",
                )
                output = process.output()
                self.assertNotIn("Traceback", output, setting)
                # One line for the outage, one for the end of it.
                self.assertEqual(output.count("[store.down]"), 0, setting)
                self.assertEqual(output.count("following the store again"), 1)
                self.assertEqual(output.count("following the store works again"), 1)

        return ensureDeferred(go())
