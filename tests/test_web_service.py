"""
The bouncer service's HTTP face as a user meets it: C{twistd -n
keycard-bouncer --http ssl:...} as a real process, curl getting a token
from C{POST /token} and using it at C{GET /whoami}, the treq client's SCRAM
login, and a C{keycard revoke} reaching the next request.
"""

from __future__ import annotations

import collections
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import treq
from treq.client import HTTPClient
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.ssl import Certificate
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

from twisted_keycard.web import KeycardHTTPClient

from ._procs import (
    TIMEOUT,
    bouncer,
    freePort,
    keycard,
    needTool,
    started,
    waitFor,
)

reactor: Any = _reactor
PASSWORD = "correct horse battery staple"


class HTTPFaceCase(TestCase):
    """
    A data directory with a development certificate and user alice, and
    the bouncer service with its HTTP face on TLS.
    """

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        self.data = self.dir / "data"
        result = keycard("init", str(self.data), "--dev-cert", "localhost")
        self.assertEqual(result.returncode, 0, result.stderr)
        result = keycard(
            "user", "add", "--data-dir", str(self.data), "alice", stdin=PASSWORD + "\n"
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.trust = self.data / "tls" / "trust" / "ca.pem"

    async def startService(self, *options: str) -> str:
        port, httpPort = freePort(), freePort()
        pem = self.data / "tls" / "server.pem"
        process = bouncer(
            self.data,
            f"tcp:{port}:interface=127.0.0.1",
            self.dir / "bouncer.log",
            "--http",
            f"ssl:{httpPort}:interface=127.0.0.1:privateKey={pem}",
            *options,
        )
        self.addCleanup(process.stop)
        await started(process, port)
        await waitFor(
            lambda: f"starting on {httpPort}" in process.output(), "the HTTP face"
        )
        self.process = process
        return f"https://localhost:{httpPort}"


@pytest.mark.integration
class CurlTests(HTTPFaceCase):
    def curl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [needTool("curl"), "-s", "--cacert", str(self.trust), *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )

    def test_tokenThenWhoami(self) -> Deferred[None]:
        """
        The README's curl session: a token from POST /token (Basic), then
        GET /whoami with it; after keycard revoke, a 401.
        """

        async def go() -> None:
            base = await self.startService()
            got = self.curl("-u", f"alice:{PASSWORD}", "-X", "POST", base + "/token")
            grant = json.loads(got.stdout)
            self.assertEqual(grant["avatarId"], "alice")
            bearer = ["-H", f"Authorization: Bearer {grant['token']}"]
            whoami = self.curl(*bearer, base + "/whoami")
            self.assertEqual(json.loads(whoami.stdout)["avatarId"], "alice")
            revoke = keycard("revoke", "--data-dir", str(self.data), grant["keycardId"])
            self.assertEqual(revoke.returncode, 0, revoke.stderr)

            def refused() -> bool:
                out = self.curl(
                    "-o", "/dev/null", "-w", "%{http_code}", *bearer, base + "/whoami"
                )
                return out.stdout == "401"

            await waitFor(refused, "the revocation")

        return ensureDeferred(go())

    def test_refusedAlike(self) -> Deferred[None]:
        async def go() -> None:
            base = await self.startService()
            answers = []
            for user in ["alice:wrong", "mallory:wrong"]:
                out = self.curl("-i", "-u", user, "-X", "POST", base + "/token")
                lines = [
                    line
                    for line in out.stdout.splitlines()
                    if not line.lower().startswith("date:")
                ]
                answers.append(lines)
            self.assertIn("401", answers[0][0])
            self.assertEqual(answers[0], answers[1])

        return ensureDeferred(go())

    def test_scramClient(self) -> Deferred[None]:
        """
        The treq client logs in with SCRAM at /token, then uses the token.
        """

        async def go() -> None:
            base = await self.startService()
            trust = Certificate.loadPEM(self.trust.read_bytes())
            agent = Agent(
                reactor,
                BrowserLikePolicyForHTTPS(trustRoot=trust),
                pool=HTTPConnectionPool(reactor, persistent=False),
            )
            http = HTTPClient(agent)
            client = KeycardHTTPClient(http, username="alice", password=PASSWORD)
            grant = await client.fetchToken(base + "/token")
            response = await client.get(base + "/whoami")
            body = json.loads(await treq.content(response))
            self.assertEqual((body["avatarId"], body["scheme"]), ("alice", "Bearer"))
            self.assertEqual(grant.avatarId, "alice")

        return ensureDeferred(go())


@pytest.mark.integration
class BasicFloodTests(HTTPFaceCase):
    """
    Wrong Basic passwords by the thousand, at once, from one address: their
    PBKDF2 runs in the service's bounded hash pool, so the flood is denied
    past the pool's queue (429, where every one was hashed and refused with
    a 401 before) and a real login from another address is served while the
    flood goes on (issue 23: in the reactor's unbounded thread pool, a real
    login took 2.4 s behind 3,000 failures).
    """

    def test_floodDeniedRealLoginServed(self) -> Deferred[None]:
        async def go() -> None:
            # No throttle, and room for the flood's connections from one
            # address: the hash pool alone bounds it.
            base = await self.startService(
                "--no-throttle", "--max-unauthenticated-per-address", "512"
            )
            curl = needTool("curl")
            url = base + "/token"
            each = [arg for _ in range(3000) for arg in ("-o", "/dev/null", url)]
            flood = subprocess.Popen(
                [
                    *(curl, "-s", "--no-progress-meter", "--cacert", str(self.trust)),
                    *("-Z", "--parallel-max", "300", "-u", "alice:wrong", "-X", "POST"),
                    *("-w", "%{http_code}\\n", *each),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            self.addCleanup(flood.kill)
            time.sleep(1.0)
            self.assertIsNone(flood.poll(), "the flood ended before the login")
            login = subprocess.run(
                [
                    *(curl, "-s", "--cacert", str(self.trust)),
                    *("--interface", "127.0.0.2", "-u", f"alice:{PASSWORD}"),
                    *("-X", "POST", "-w", "\\n%{http_code} %{time_total}", url),
                ],
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
            body, _, status = login.stdout.rpartition("\n")
            code, seconds = status.split()
            self.assertEqual(code, "200", login.stdout)
            self.assertEqual(json.loads(body)["avatarId"], "alice")
            # Served while the flood goes on.  How fast is a figure, not a
            # bound (docs/security.rst): on a machine busy with other work
            # the flood's 300 TLS handshakes at a time slow it too.
            print(f"\n{self.id()}: the real login took {seconds} s")
            self.assertIsNone(flood.poll(), "the flood ended before the login")
            out, _ = flood.communicate(timeout=TIMEOUT * 4)
            codes = collections.Counter(out.split())
            self.assertEqual(sum(codes.values()), 3000)
            # Refused, or (on a busy machine, "000") dropped by the
            # listener's bounds: never served.
            self.assertEqual(set(codes) - {"401", "429", "000"}, set(), codes)
            # Most are denied at once, unhashed: the pool holds 17.
            self.assertGreater(codes["429"], codes["401"], codes)
            self.assertNotIn("Traceback", self.process.output())

        return ensureDeferred(go())
