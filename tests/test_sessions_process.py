"""
Brokered sessions between real processes over real TCP: the bouncer
service under twistd, the example's service, and clients (the example's,
and one in the test process); revoking the client's keycard with the
keycard command ends its session.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from twisted_keycard import KeycardClientFactory
from twisted_keycard.scram import SCRAMAnswerer
from twisted_keycard.sessions import connectSession

from ._procs import (
    ROOT,
    bouncer,
    freePort,
    keycard,
    reactor,
    scriptProcess,
    started,
    waitFor,
)

pytestmark = pytest.mark.integration

EXAMPLE = str(ROOT / "examples" / "brokered_session.py")
PASSWORDS = {"alice": "alice's password", "chat": "chat's password"}


class ExampleTests(TestCase):
    def test_runsAsIs(self) -> Deferred[None]:
        """
        The example runs its three processes and prints each side's view
        of the other.
        """

        async def go() -> None:
            out, err, code = await getProcessOutputAndValue(
                sys.executable,
                [EXAMPLE],
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                path=str(ROOT),
            )
            self.assertEqual(code, 0, (out + err).decode())
            text = out.decode()
            for line in (
                "granted to alice for chat",
                "of alice with chat established",
                "service chat: the bouncer vouches for client alice",
                "client alice: the bouncer vouches for service chat",
                "client alice: chat says 'hello alice, this is chat'",
                "client alice: chat knows me as 'alice'",
                "service chat: the session of alice ended",
            ):
                self.assertIn(line, text)

        return ensureDeferred(go())


class ThreeProcessTests(TestCase):
    def test_sessionAndRevocation(self) -> Deferred[None]:
        async def go() -> None:
            base = Path(self.mktemp()).resolve()
            base.mkdir(parents=True)
            data = base / "data"
            keycard("init", str(data))
            for name, password in PASSWORDS.items():
                keycard("user", "add", "--data-dir", str(data), name, stdin=password)
            bouncerPort, servicePort = freePort(), freePort()
            service = bouncer(
                data,
                f"tcp:{bouncerPort}:interface=127.0.0.1",
                base / "bouncer.log",
                "--services",
                "chat",
            )
            self.addCleanup(service.stop)
            await started(service, bouncerPort)
            toBouncer = f"tcp:127.0.0.1:{bouncerPort}"

            chat = self.spawn(
                base / "service.log",
                ["service", toBouncer, str(servicePort), "chat"],
                PASSWORDS["chat"],
            )
            serviceLog = (base / "service.log").read_text
            await waitFor(lambda: "listening on" in serviceLog(), "the service")

            # The client as a process of its own.
            client = self.spawn(
                base / "client.log",
                ["client", toBouncer, f"tcp:127.0.0.1:{servicePort}", "alice", "chat"],
                PASSWORDS["alice"],
            )
            await waitFor(lambda: client.poll() is not None, "the client")
            clientLog = (base / "client.log").read_text()
            self.assertEqual(client.returncode, 0, clientLog)
            self.assertIn(
                "client alice: the bouncer vouches for service chat", clientLog
            )
            self.assertIn("client alice: chat knows me as 'alice'", clientLog)
            self.assertIn(
                "service chat: the bouncer vouches for client alice", serviceLog()
            )
            self.assertIsNone(chat.poll())

            # A client in this process; its keycard is revoked by the
            # keycard command, which the bouncer follows.
            factory = KeycardClientFactory()
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", bouncerPort)
            broker: Any = await endpoint.connect(factory)
            self.addCleanup(broker.transport.loseConnection)
            login = await factory.loginWithKeycard(
                [SCRAMAnswerer("alice", PASSWORDS["alice"])]
            )
            session = await connectSession(
                login, TCP4ClientEndpoint(reactor, "127.0.0.1", servicePort), "chat"
            )
            self.addCleanup(session.end)
            self.assertEqual(await session.perspective.callRemote("whoami"), "alice")
            ended: list[None] = []
            session.whenEnded().addCallback(ended.append)
            assert login.keycard.id is not None
            revoked = keycard("revoke", "--data-dir", str(data), login.keycard.id)
            self.assertEqual(revoked.returncode, 0, revoked.stderr)
            await waitFor(lambda: ended, "the session to end")
            await waitFor(
                lambda: serviceLog().count("the session of alice ended") == 2,
                "the service to end the session",
            )

        return ensureDeferred(go())

    def spawn(self, log: Path, args: list[str], password: str) -> subprocess.Popen[str]:
        return scriptProcess(self, [EXAMPLE, *args], log, password)
