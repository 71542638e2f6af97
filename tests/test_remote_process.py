"""
A requester process authenticating its clients through the bouncer service
in another process; the service restarts in the middle, the requester
reconnects, and a keycard the bouncer expires reaches the client.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial.unittest import TestCase

from twisted_keycard import KeycardClientFactory
from twisted_keycard.scram import SCRAMAnswerer

from ._procs import ENV, ROOT, bouncer, freePort, keycard, reactor, started, waitFor

SECRET = "requester secret"
PASSWORD = "alice's password"

# Slow: runs the bouncer and a requester as processes.
pytestmark = pytest.mark.integration


class RemoteProcessTests(TestCase):
    def test_restartAndExpiry(self) -> Deferred[None]:
        async def go() -> None:
            base = Path(self.mktemp()).resolve()
            base.mkdir(parents=True)
            data = base / "data"
            keycard("init", str(data))
            keycard("user", "add", "--data-dir", str(data), "chat", stdin=SECRET)
            keycard("user", "add", "--data-dir", str(data), "alice", stdin=PASSWORD)
            bouncerPort, requesterPort = freePort(), freePort()
            service = bouncer(
                data,
                f"tcp:{bouncerPort}:interface=127.0.0.1",
                base / "bouncer.log",
                "--requesters",
                "chat",
            )
            self.addCleanup(service.stop)
            await started(service, bouncerPort)

            log = open(base / "requester.log", "w")  # noqa: SIM115 - closed in cleanup
            self.addCleanup(log.close)
            requester = subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "tests" / "_requesterproc.py"),
                    str(bouncerPort),
                    str(requesterPort),
                    "chat",
                ],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                env=ENV,
            )
            self.addCleanup(requester.wait)
            self.addCleanup(requester.kill)
            assert requester.stdin is not None
            requester.stdin.write(SECRET + "\n")
            requester.stdin.close()

            def requesterLog() -> str:
                return (base / "requester.log").read_text()

            await waitFor(
                lambda: "connected to the bouncer" in requesterLog(), "requester"
            )

            factory = KeycardClientFactory()
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", requesterPort)
            broker: Any = await endpoint.connect(factory)
            self.addCleanup(broker.transport.loseConnection)
            login = await factory.loginWithKeycard([SCRAMAnswerer("alice", PASSWORD)])
            self.assertEqual(await login.perspective.callRemote("whoami"), "alice")
            self.assertEqual(login.keycard.requesterName, "chat")
            lost: list[bool] = []
            login.perspective.notifyOnDisconnect(lambda ref: lost.append(True))

            # The bouncer service restarts; the requester reconnects and
            # tells it which keycard its client still holds.
            service.stop()
            await started(service, bouncerPort)
            await waitFor(
                lambda: "resent 1 ids" in requesterLog(), "the requester to resync"
            )
            self.assertFalse(lost)

            # The restarted bouncer expires the keycard (revoked by the
            # administrator); the requester drops the client.
            assert login.keycard.id is not None
            revoked = keycard("revoke", "--data-dir", str(data), login.keycard.id)
            self.assertEqual(revoked.returncode, 0, revoked.stderr)
            await waitFor(lambda: lost, "the client to be dropped")

        return ensureDeferred(go())
