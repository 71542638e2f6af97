"""
Bouncer processes on one SQLite store following what changes in it: a key
rotation made by C{keycard keys rotate}, and the lease of a bouncer killed
with SIGKILL, whose seat is freed when the lease runs out, or at once when
it restarts on its data directory.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater

from twisted_keycard import (
    IAnswerer,
    KeycardClientFactory,
    KeycardDenied,
    KeycardRefused,
)
from twisted_keycard.pb._client import KeycardLogin
from twisted_keycard.scram import SCRAMAnswerer
from twisted_keycard.store.sqlite._store import SQLiteStore
from twisted_keycard.tokens import TokenAnswerer, UnknownKey, verify

from ._procs import keycard, reactor
from .test_multibouncer import PASSWORD, BouncerProcesses

# Slow: runs bouncer processes on one store.
pytestmark = pytest.mark.integration

#: Seconds a change may take to reach the bouncers, at most: generous, the
#: follow interval being one second.
DEADLINE = 20.0


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = DEADLINE
) -> float:
    """
    Call C{check} until it is true.

    @return: the seconds it took.
    @raise AssertionError: after C{timeout} seconds.
    """
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.25, lambda: None)
    return time.monotonic() - start


class UpkeepProcessTests(BouncerProcesses):
    async def login(
        self, port: int, answerer: IAnswerer | None = None, keep: bool = False
    ) -> KeycardLogin:
        """
        Log in on a connection of its own, closed once the login is over
        unless it succeeded and C{keep}: polling leaves no connection
        behind.
        """
        factory = KeycardClientFactory()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        broker: Any = await endpoint.connect(factory)
        try:
            login = await factory.loginWithKeycard(
                [answerer or SCRAMAnswerer("alice", PASSWORD)]
            )
        except BaseException:
            broker.transport.loseConnection()
            raise
        if keep:
            self.addCleanup(broker.transport.loseConnection)
        else:
            broker.transport.loseConnection()
        return login

    def test_keyRotationFollowed(self) -> Deferred[None]:
        """
        After C{keycard keys rotate --grace 2}, both running bouncers sign
        with the new key within the follow interval, and refuse a token
        signed with the old key once the grace has ended.
        """

        async def go() -> None:
            one, two = await self.startBouncers()
            old = (await self.login(one)).keycard.token
            assert old is not None
            rotated = keycard(
                "keys", "rotate", "--grace", "2", "--data-dir", str(self.data)
            )
            self.assertEqual(rotated.returncode, 0, rotated.stderr)
            store = await SQLiteStore.open(str(self.data / "keycard.db"), reactor)
            self.addCleanup(store.close)
            keyring = await store.loadKeyring()
            assert keyring is not None
            newKid = keyring.signing.kid
            self.assertIn(newKid, rotated.stdout)

            def signedWithNewKey(port: int) -> Callable[[], Awaitable[bool]]:
                async def check() -> bool:
                    token = (await self.login(port)).keycard.token
                    try:
                        return verify(token, keyring, time.time()).kid == newKid
                    except UnknownKey:
                        return False

                return check

            def oldTokenRefused(port: int) -> Callable[[], Awaitable[bool]]:
                async def check() -> bool:
                    try:
                        await self.login(port, TokenAnswerer(old))
                    except KeycardRefused:
                        return True
                    return False

                return check

            for port in (one, two):
                await eventually(signedWithNewKey(port), "the new signing key")
            for port in (one, two):
                await eventually(oldTokenRefused(port), "the old key's grace to end")

        return ensureDeferred(go())

    def test_seatOfKilledBouncer(self) -> Deferred[None]:
        """
        The one seat of a pool, held by a client of a bouncer killed with
        SIGKILL, is free for a new client of the restarted bouncer once the
        killed one's lease runs out.
        """

        async def go() -> None:
            options = ("--seat-pool", "licenses", "--seats", "1", "--lease-time", "2")
            process, port = await self.startBouncer("one", *options)
            await self.login(port, SCRAMAnswerer("u0", PASSWORD), keep=True)
            with self.assertRaises(KeycardDenied):
                await self.login(port, SCRAMAnswerer("u1", PASSWORD))
            process.stop(signal.SIGKILL)
            _, again = await self.startBouncer("one", *options, log="restarted")

            async def seated() -> bool:
                try:
                    await self.login(again, SCRAMAnswerer("u1", PASSWORD), keep=True)
                except KeycardDenied:
                    return False
                return True

            await eventually(seated, "the killed bouncer's seat")
            with self.assertRaises(KeycardDenied):
                await self.login(again, SCRAMAnswerer("u2", PASSWORD))

        return ensureDeferred(go())

    def test_restartFreesKilledSeat(self) -> Deferred[None]:
        """
        A bouncer killed with SIGKILL and restarted on its data directory
        frees its dead run's seat at its start, although that lease lasts
        ten minutes, and logs it (C{lease.released}); the seat held through
        another bouncer running on the directory stays taken.
        """

        async def go() -> None:
            options = ("--seat-pool", "licenses", "--seats", "2", "--lease-time", "600")
            one, port = await self.startBouncer("one", *options)
            _, other = await self.startBouncer("two", *options)
            await self.login(port, SCRAMAnswerer("u0", PASSWORD), keep=True)
            await self.login(other, SCRAMAnswerer("u1", PASSWORD), keep=True)
            with self.assertRaises(KeycardDenied):
                await self.login(other, SCRAMAnswerer("u2", PASSWORD))
            one.stop(signal.SIGKILL)
            start = time.monotonic()
            restarted, again = await self.startBouncer("one", *options, log="restarted")
            await self.login(again, SCRAMAnswerer("u2", PASSWORD), keep=True)
            self.assertLess(time.monotonic() - start, DEADLINE)
            self.assertIn(
                "released 1 keycard(s) held under leases that ran out or by"
                " dead runs of this bouncer (one:",
                restarted.output(),
            )
            with self.assertRaises(KeycardDenied):
                await self.login(again, SCRAMAnswerer("u3", PASSWORD))
            with self.assertRaises(KeycardDenied):
                await self.login(other, SCRAMAnswerer("u3", PASSWORD))

        return ensureDeferred(go())
