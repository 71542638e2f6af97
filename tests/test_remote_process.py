"""
A requester process authenticating its clients through the bouncer service
in another process: the service restarts in the middle, the requester
reconnects, and keycards the bouncer expires or revokes, even while it was
down, reach the client; keycards are renewed while connected; one
requester connection per name.  (Revoked ids follow C{--}: one may start
with a dash.)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from twisted_keycard import KeycardClientFactory, KeycardDenied, KeycardLogin
from twisted_keycard.scram import SCRAMAnswerer

from ._procs import (
    accepts,
    bouncer,
    freePort,
    keycard,
    reactor,
    requesterProcess,
    started,
    waitFor,
)

SECRET = "requester secret"
PASSWORD = "alice's password"

# Slow: runs the bouncer and a requester as processes.
pytestmark = pytest.mark.integration


def _listening(log: Path) -> bool:
    return log.exists() and "LISTENING" in log.read_text()


class RemoteProcessTests(TestCase):
    async def setUpService(self, *options: str) -> tuple[Path, Path, int]:
        """
        A data directory with the requester C{chat} and the user C{alice},
        and the bouncer service running on it.

        @return: the base directory, the data directory and the port.
        """
        base = Path(self.mktemp()).resolve()
        base.mkdir(parents=True)
        data = base / "data"
        keycard("init", str(data))
        keycard("user", "add", "--data-dir", str(data), "chat", stdin=SECRET)
        keycard("user", "add", "--data-dir", str(data), "alice", stdin=PASSWORD)
        port = freePort()
        self.service = bouncer(
            data,
            f"tcp:{port}:interface=127.0.0.1",
            base / "bouncer.log",
            "--requesters",
            "chat",
            *options,
        )
        self.addCleanup(self.service.stop)
        await started(self.service, port)
        return base, data, port

    def requester(
        self, log: Path, bouncerPort: int, *extra: str
    ) -> tuple[subprocess.Popen[str], int]:
        """
        Start a requester process named C{chat}, logging to C{log}.

        @return: the process and the port its clients connect to.
        """
        return requesterProcess(self, bouncerPort, log, SECRET, *extra)

    async def client(self, port: int) -> tuple[KeycardLogin, list[bool]]:
        """
        Alice logs in through the requester on C{port}.

        @return: her login, and a list that gets an item when she is dropped.
        """
        factory = KeycardClientFactory()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        broker: Any = await endpoint.connect(factory)
        self.addCleanup(broker.transport.loseConnection)
        login = await factory.loginWithKeycard([SCRAMAnswerer("alice", PASSWORD)])
        self.assertEqual(await login.perspective.callRemote("whoami"), "alice")
        self.assertEqual(login.keycard.requesterName, "chat")
        lost: list[bool] = []
        login.perspective.notifyOnDisconnect(lambda ref: lost.append(True))
        return login, lost

    def test_restartAndExpiry(self) -> Deferred[None]:
        async def go() -> None:
            base, data, bouncerPort = await self.setUpService()
            _, requesterPort = self.requester(base / "requester.log", bouncerPort)

            def requesterLog() -> str:
                return (base / "requester.log").read_text()

            await waitFor(
                lambda: "connected to the bouncer" in requesterLog(), "requester"
            )
            login, lost = await self.client(requesterPort)
            other, otherLost = await self.client(requesterPort)

            # The bouncer service restarts; while it is down the other
            # client's keycard is revoked.  The requester reconnects and
            # tells it which keycards its clients still hold: the revoked
            # one is refused, and its client dropped at once.
            self.service.stop()
            assert other.keycard.id is not None
            revoked = keycard("revoke", "--data-dir", str(data), "--", other.keycard.id)
            self.assertEqual(revoked.returncode, 0, revoked.stderr)
            await started(self.service, bouncerPort)
            await waitFor(
                lambda: "resent 2 ids, 1 refused" in requesterLog(),
                "the requester to resync",
            )
            await waitFor(lambda: otherLost, "the revoked client to be dropped")
            self.assertFalse(lost)

            # The restarted bouncer expires the keycard (revoked by the
            # administrator); the requester drops the client.
            assert login.keycard.id is not None
            revoked = keycard("revoke", "--data-dir", str(data), "--", login.keycard.id)
            self.assertEqual(revoked.returncode, 0, revoked.stderr)
            await waitFor(lambda: lost, "the client to be dropped")

        return ensureDeferred(go())

    def test_longOutageSpreadsDrops(self) -> Deferred[None]:
        """
        A bouncer down for longer than the keycards' duration: when the
        requester is back, the clients of the expired keycards are dropped
        spread over its C{dropSpread} (2 s here), not in one burst; one
        revoked meanwhile is dropped at once.
        """

        async def go() -> None:
            base, data, bouncerPort = await self.setUpService("--duration", "2")
            _, requesterPort = self.requester(
                base / "requester.log", bouncerPort, "spread=2"
            )

            def requesterLog() -> str:
                return (base / "requester.log").read_text()

            await waitFor(
                lambda: "connected to the bouncer" in requesterLog(), "requester"
            )
            clients = [await self.client(requesterPort) for _ in range(4)]
            dropped: dict[int, float] = {}
            self.service.stop()
            revoked = clients[0][0].keycard.id
            assert revoked is not None
            answer = keycard("revoke", "--data-dir", str(data), "--", revoked)
            self.assertEqual(answer.returncode, 0, answer.stderr)
            # Past the keycards' duration.
            await deferLater(reactor, 3, lambda: None)
            await started(self.service, bouncerPort)

            def allDropped() -> bool:
                now = time.monotonic()
                for i, (_, lost) in enumerate(clients):
                    if lost and i not in dropped:
                        dropped[i] = now
                return len(dropped) == len(clients)

            await waitFor(allDropped, "every client to be dropped")
            self.assertIn("resent 4 ids, 4 refused", requesterLog())
            self.assertIn(
                "dropping 3 clients whose keycards the bouncer no longer knows,"
                " over 2.0 s",
                requesterLog(),
            )
            spread = [dropped[i] for i in (1, 2, 3)]
            # The revoked one first; the others over the spread (one each
            # 2/3 s: the last at least a second after the first).
            self.assertLessEqual(dropped[0], min(spread))
            self.assertGreaterEqual(max(spread) - min(spread), 1.0)

        return ensureDeferred(go())

    def test_backWithinSeconds(self) -> Deferred[None]:
        """
        A requester started before its bouncer tells a client to try again
        later (not that its kinds are not taken), and with the default
        reconnection policy it is back within seconds of its bouncer after
        a long outage (issue 24: 17.6 s after a 37 s outage, Twisted's
        default backoff).
        """

        async def go() -> None:
            base, _, bouncerPort = await self.setUpService()
            self.service.stop()
            _, requesterPort = self.requester(
                base / "requester.log", bouncerPort, "default"
            )
            factory = KeycardClientFactory()
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", requesterPort)
            await waitFor(lambda: _listening(base / "requester.log"), "requester")
            broker: Any = await endpoint.connect(factory)
            self.addCleanup(broker.transport.loseConnection)
            with self.assertRaises(KeycardDenied) as refused:
                await factory.loginWithKeycard([SCRAMAnswerer("alice", PASSWORD)])
            self.assertEqual(
                str(refused.exception),
                "the bouncer is not reachable yet; try again later",
            )
            # An outage long enough for the backoff to reach its cap.
            await deferLater(reactor, 20, lambda: None)
            await started(self.service, bouncerPort)
            await waitFor(lambda: accepts(bouncerPort), "the bouncer to accept")
            # The delays are bounded by reconnectPolicy's cap (its unit
            # tests); here the figure is shown, not asserted.
            seconds = await waitFor(
                lambda: (
                    "connected to the bouncer" in (base / "requester.log").read_text()
                ),
                "the requester to reconnect",
            )
            sys.stderr.write(f"\nrequester back {seconds:.2f}s after its bouncer\n")
            login, _ = await self.client(requesterPort)
            self.assertEqual(login.keycard.avatarId, "alice")

        return ensureDeferred(go())

    def test_renewalAndOneConnectionPerName(self) -> Deferred[None]:
        """
        With keycards valid for 2 s, the requester and its client stay
        connected for several durations (both are renewed).  A second
        requester process under the same name is refused while the first
        lives, and takes over when it is killed.
        """

        async def go() -> None:
            base, data, bouncerPort = await self.setUpService("--duration", "2")
            first, firstPort = self.requester(base / "first.log", bouncerPort)

            def firstLog() -> str:
                return (base / "first.log").read_text()

            await waitFor(lambda: "connected to the bouncer" in firstLog(), "requester")
            login, lost = await self.client(firstPort)
            await deferLater(reactor, 6.0, lambda: None)
            self.assertFalse(lost)
            self.assertEqual(firstLog().count("connected to the bouncer"), 1)
            self.assertEqual(await login.perspective.callRemote("whoami"), "alice")

            _, secondPort = self.requester(base / "second.log", bouncerPort)

            def secondLog() -> str:
                return (base / "second.log").read_text()

            await waitFor(
                lambda: "this requester is already connected" in secondLog(),
                "the second requester to be refused",
            )
            await self.client(firstPort)

            first.kill()
            await waitFor(
                lambda: "connected to the bouncer" in secondLog(),
                "the second requester to take over",
            )
            login, lost = await self.client(secondPort)
            assert login.keycard.id is not None
            revoked = keycard("revoke", "--data-dir", str(data), "--", login.keycard.id)
            self.assertEqual(revoked.returncode, 0, revoked.stderr)
            await waitFor(lambda: lost, "the second requester's client to be dropped")

        return ensureDeferred(go())
