"""
Issue 23, finding 3, rerun against real processes: C{twistd -n
keycard-bouncer --http ...} with remote requesters C{app1} and C{app2} and
the brokered-session service C{chat}.  A token alice gets through C{app1}
is taken through C{app1} only: not through C{app2}, not at the bouncer's
own PB face, not at C{/whoami}, and so gives no ticket for C{chat}; each
refusal is the usual opaque one, its reason in the bouncer's log.  A token
issued at the bouncer's PB face is taken at its faces (PB, HTTP, tickets)
and not through C{app1}.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial.unittest import TestCase

from twisted_keycard import KeycardClientFactory, KeycardLogin, KeycardRefused
from twisted_keycard.error import SessionRefused
from twisted_keycard.scram import SCRAMAnswerer
from twisted_keycard.sessions import requestTicket
from twisted_keycard.tokens import TokenAnswerer

from ._procs import (
    ROOT,
    TIMEOUT,
    bouncer,
    freePort,
    keycard,
    needTool,
    reactor,
    scriptProcess,
    started,
    waitFor,
)

pytestmark = pytest.mark.integration

PASSWORDS = {
    "alice": "alice's password",
    "app1": "app1's secret",
    "app2": "app2's secret",
    "chat": "chat's password",
}
EXAMPLE = str(ROOT / "examples" / "brokered_session.py")
#: The bouncer's reason for a token presented where its audience does not
#: name (never sent to the client).
NOT_FOR_HERE = "keycard refused: token not for this requester"


class AudienceAttackTests(TestCase):
    def spawn(self, log: Path, args: list[str], password: str) -> None:
        scriptProcess(self, args, log, password)

    async def login(self, port: int, answerer: Any) -> KeycardLogin:
        factory = KeycardClientFactory()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        broker: Any = await endpoint.connect(factory)
        self.addCleanup(broker.transport.loseConnection)
        return await factory.loginWithKeycard([answerer])

    async def tokenLogin(self, port: int, token: str) -> KeycardLogin | None:
        """
        Log in with C{token} at C{port}: the login, or C{None} when
        refused, with the same opaque refusal as any bad token.
        """
        try:
            return await self.login(port, TokenAnswerer(token))
        except KeycardRefused as e:
            self.assertEqual(str(e), str(KeycardRefused()))
            return None

    async def ticket(self, login: KeycardLogin | None) -> str:
        """
        What the bouncer says when C{login} asks for a ticket for C{chat}.
        """
        if login is None:
            return "no login"
        try:
            grant = await requestTicket(login, "chat")
        except SessionRefused:
            return "refused"
        self.assertEqual((grant.clientName, grant.serviceName), ("alice", "chat"))
        return "granted"

    def whoami(self, base: str, token: str) -> str:
        out = subprocess.run(
            [
                needTool("curl"),
                "-s",
                "--cacert",
                str(self.trust),
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                f"Authorization: Bearer {token}",
                base + "/whoami",
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        return out.stdout

    def test_appTokenAtTheBouncersFaces(self) -> Deferred[None]:
        async def go() -> None:
            base = Path(self.mktemp()).resolve()
            base.mkdir(parents=True)
            data = base / "data"
            result = keycard("init", str(data), "--dev-cert", "localhost")
            self.assertEqual(result.returncode, 0, result.stderr)
            self.trust = data / "tls" / "trust" / "ca.pem"
            for name, password in PASSWORDS.items():
                keycard("user", "add", "--data-dir", str(data), name, stdin=password)
            port, httpPort = freePort(), freePort()
            app1Port, app2Port, chatPort = freePort(), freePort(), freePort()
            pem = data / "tls" / "server.pem"
            service = bouncer(
                data,
                f"tcp:{port}:interface=127.0.0.1",
                base / "bouncer.log",
                "--http",
                f"ssl:{httpPort}:interface=127.0.0.1:privateKey={pem}",
                "--requesters",
                "app1,app2",
                "--services",
                "chat",
            )
            self.addCleanup(service.stop)
            await started(service, port)
            https = f"https://localhost:{httpPort}"
            await waitFor(
                lambda: f"starting on {httpPort}" in service.output(), "the HTTP face"
            )
            requester = str(ROOT / "tests" / "_requesterproc.py")
            for name, at in (("app1", app1Port), ("app2", app2Port)):
                self.spawn(
                    base / f"{name}.log",
                    [requester, str(port), str(at), name],
                    PASSWORDS[name],
                )
            self.spawn(
                base / "chat.log",
                [EXAMPLE, "service", f"tcp:127.0.0.1:{port}", str(chatPort), "chat"],
                PASSWORDS["chat"],
            )
            for name in ("app1", "app2"):
                path = base / f"{name}.log"
                await waitFor(
                    lambda path=path: "connected to the bouncer" in path.read_text(),
                    name,
                )
            chatLog = base / "chat.log"
            await waitFor(lambda: "listening on" in chatLog.read_text(), "chat")

            # Alice's token through app1 is taken through app1.
            viaApp1 = await self.login(
                app1Port, SCRAMAnswerer("alice", PASSWORDS["alice"])
            )
            token = viaApp1.keycard.token
            assert token is not None
            again = await self.login(app1Port, TokenAnswerer(token))
            self.assertEqual(await again.perspective.callRemote("whoami"), "alice")

            # Nowhere else: not through app2, not at the bouncer's PB face
            # (so no ticket for chat), not at /whoami.
            atPB = await self.tokenLogin(port, token)
            seen = {
                "app2": await self.tokenLogin(app2Port, token) is not None,
                "PB face": atPB is not None,
                "/whoami": self.whoami(https, token),
                "ticket": await self.ticket(atPB),
            }
            refused = {"/whoami": "401", "ticket": "no login"}
            self.assertEqual(seen, {"app2": False, "PB face": False, **refused})
            # Nor can app1's keycard be used for a ticket by a client
            # logged in at the PB face.
            atBouncer = await self.login(
                port, SCRAMAnswerer("alice", PASSWORDS["alice"])
            )
            stolen = KeycardLogin(atBouncer.perspective, viaApp1.keycard)
            self.assertEqual(await self.ticket(stolen), "refused")
            text = service.output()
            self.assertEqual(text.count(NOT_FOR_HERE), 3, text)
            self.assertIn("with another avatar's keycard", text)

            # A token issued at the PB face is taken at the bouncer's
            # faces, tickets included, and not through app1.
            own = atBouncer.keycard.token
            assert own is not None
            renewed = await self.tokenLogin(port, own)
            self.assertEqual(await self.ticket(renewed), "granted")
            self.assertEqual(self.whoami(https, own), "200")
            self.assertIsNone(await self.tokenLogin(app1Port, own))

        return ensureDeferred(go())
