"""
The web guard over real TLS on loopback, with treq and the real reactor:
each scheme, refusals byte for byte, revocation written by another process's
revoker reaching the next request within the follow interval, throttling,
Basic refused over plain HTTP, the session cookie's attributes and CSRF.
"""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any
from urllib.parse import urlencode

import pytest
import treq
from treq.client import HTTPClient
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.iweb import IResponse

from twisted_keycard import MemoryStore
from twisted_keycard.bouncer import Revoker, Throttle, Upkeep
from twisted_keycard.error import KeycardRefused
from twisted_keycard.web import (
    GuardOptions,
    KeycardGuard,
    KeycardHTTPClient,
    KeycardSite,
)

from ._tls import Identity
from ._web import PASSWORD, WebRealm, application, makeBouncer

reactor: Any = _reactor
pytestmark = pytest.mark.integration

#: Generous: the follow interval is 0.2 s.
DEADLINE = 10.0


class _Counting(Factory):
    """
    Wraps a site's protocols to count the connections still open, so the
    test ends only once the server has closed them all.
    """

    def __init__(self, site: KeycardSite) -> None:
        self.site = site
        self.open = 0

    def buildProtocol(self, addr: Any) -> Protocol | None:
        protocol: Any = self.site.buildProtocol(addr)
        lost = protocol.connectionLost
        self.open += 1

        def connectionLost(reason: Any) -> None:
            self.open -= 1
            lost(reason)

        protocol.connectionLost = connectionLost
        return protocol  # type: ignore[no-any-return]


def basic(user: str, password: str) -> dict[str, str]:
    return {
        "Authorization": "Basic "
        + base64.b64encode(f"{user}:{password}".encode()).decode()
    }


class TLSGuardTests(TestCase):
    async def start(self, **bouncerOptions: Any) -> None:
        self.store = MemoryStore()
        self.bouncer = makeBouncer(
            reactor,
            self.store,
            upkeep=Upkeep(followInterval=0.2),
            realThreads=True,
            **bouncerOptions,
        )
        self.bouncer.startService()
        self.addCleanup(self.bouncer.stopService)
        await self.bouncer.started
        self.guard = KeycardGuard(
            self.bouncer, clock=reactor, options=GuardOptions(loginPath="/login")
        )
        self.realm = WebRealm()
        site = KeycardSite(application(self.guard, self.realm), timeout=None)
        self.counting = _Counting(site)
        identity = Identity.make("localhost")
        tls = reactor.listenSSL(
            0, self.counting, identity.private.options(), interface="127.0.0.1"
        )
        plain = reactor.listenTCP(0, self.counting, interface="127.0.0.1")
        self.addCleanup(self.closed)
        self.addCleanup(tls.stopListening)
        self.addCleanup(plain.stopListening)
        self.base = f"https://localhost:{tls.getHost().port}"
        self.plainBase = f"http://127.0.0.1:{plain.getHost().port}"
        pool = HTTPConnectionPool(reactor, persistent=False)
        agent = Agent(
            reactor, BrowserLikePolicyForHTTPS(trustRoot=identity.trust), pool=pool
        )
        self.http = HTTPClient(agent)

    async def closed(self) -> None:
        start = time.monotonic()
        while self.counting.open and time.monotonic() - start < DEADLINE:
            await deferLater(reactor, 0.02, lambda: None)

    async def fetch(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
    ) -> tuple[IResponse, bytes]:
        url = path if path.startswith("http") else self.base + path
        sent: Any = headers or {}
        response = await self.http.request(
            method, url, headers=sent, allow_redirects=False, **kw
        )
        return response, await treq.content(response)

    def shape(self, response: IResponse, body: bytes) -> tuple[Any, ...]:
        headers = sorted(
            (k, list(v))
            for k, v in response.headers.getAllRawHeaders()
            if k.lower() != b"date"
        )
        return response.code, headers, body

    def test_schemes(self) -> Deferred[None]:
        """
        Basic, a token from /token then Bearer, and SCRAM-SHA-256 with the
        treq client, each reaching the avatar over TLS.
        """

        async def go() -> None:
            await self.start()
            response, body = await self.fetch("GET", "/app", basic("alice", PASSWORD))
            self.assertEqual(body, b"hello, alice (Basic)")
            response, body = await self.fetch(
                "POST", "/token", basic("alice", PASSWORD)
            )
            token = json.loads(body)["token"]
            _, body = await self.fetch(
                "GET", "/app", {"Authorization": f"Bearer {token}"}
            )
            self.assertEqual(body, b"hello, alice (Bearer)")
            client = KeycardHTTPClient(self.http, username="alice", password=PASSWORD)
            response = await client.get(self.base + "/app")
            self.assertEqual(
                await treq.content(response), b"hello, alice (SCRAM-SHA-256)"
            )
            wrong = KeycardHTTPClient(self.http, username="alice", password="nope")
            with self.assertRaises(KeycardRefused):
                await wrong.get(self.base + "/app")

        return ensureDeferred(go())

    def test_unknownAndWrongAlike(self) -> Deferred[None]:
        async def go() -> None:
            await self.start()
            wrong = await self.fetch("GET", "/app", basic("alice", "wrong"))
            unknown = await self.fetch("GET", "/app", basic("mallory", "wrong"))
            self.assertEqual(wrong[0].code, 401)
            self.assertEqual(self.shape(*wrong), self.shape(*unknown))

        return ensureDeferred(go())

    def test_revocationFollowed(self) -> Deferred[None]:
        """
        A revocation written to the store by another revoker (as the
        keycard command does) reaches the next request within the follow
        interval: a 401.
        """

        async def go() -> None:
            await self.start()
            _, body = await self.fetch("POST", "/token", basic("alice", PASSWORD))
            grant = json.loads(body)
            bearer = {"Authorization": f"Bearer {grant['token']}"}
            response, _ = await self.fetch("GET", "/app", bearer)
            self.assertEqual(response.code, 200)
            elsewhere = Revoker(self.store, reactor, 3600.0)
            await elsewhere.revokeKeycardIds([grant["keycardId"]])
            start = time.monotonic()
            while self.guard.keycardIds() and time.monotonic() - start < DEADLINE:
                await deferLater(reactor, 0.05, lambda: None)
            response, _ = await self.fetch("GET", "/app", bearer)
            self.assertEqual(response.code, 401)

        return ensureDeferred(go())

    def test_throttled(self) -> Deferred[None]:
        async def go() -> None:
            await self.start(throttle=Throttle(perAccount=2, perAddress=50))
            for _ in range(2):
                await self.fetch("GET", "/app", basic("alice", "wrong"))
            response, _ = await self.fetch("GET", "/app", basic("alice", PASSWORD))
            self.assertEqual(response.code, 429)
            # The failures leave the hour's window in (nearly) an hour.
            [wait] = response.headers.getRawHeaders("retry-after")
            self.assertIn(int(wait), range(3500, 3601))

        return ensureDeferred(go())

    def test_basicRefusedOverPlainHTTP(self) -> Deferred[None]:
        async def go() -> None:
            await self.start()
            response, body = await self.fetch(
                "GET", self.plainBase + "/app", basic("alice", PASSWORD)
            )
            self.assertEqual(response.code, 401)
            self.assertIn(b"HTTPS", body)
            self.assertNotIn(
                "Basic", " ".join(response.headers.getRawHeaders("www-authenticate"))
            )
            self.assertEqual(self.bouncer.held, {})

        return ensureDeferred(go())

    def test_sessionCookieAndCSRF(self) -> Deferred[None]:
        """
        The login form over TLS: the session cookie's attributes, and a
        state-changing request without the CSRF token refused.
        """

        async def go() -> None:
            await self.start()
            response, page = await self.fetch("GET", "/login")
            match = re.search(rb'name="csrf" value="([^"]+)"', page)
            assert match is not None
            csrf = match.group(1).decode()
            form = urlencode(
                {
                    "username": "alice",
                    "password": PASSWORD,
                    "csrf": csrf,
                    "next": "/app",
                }
            )
            response, _ = await self.fetch(
                "POST",
                "/login",
                {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Cookie": f"__Host-keycard-login={csrf}",
                },
                data=form.encode(),
            )
            self.assertEqual(response.code, 303)
            (cookie,) = [
                c
                for c in response.headers.getRawHeaders("set-cookie")
                if c.startswith("__Host-keycard=")
            ]
            for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"]:
                self.assertIn(attribute, cookie)
            session = {"Cookie": cookie.split(";")[0]}
            _, body = await self.fetch("GET", "/app", session)
            self.assertEqual(body, b"hello, alice (session)")
            refused, _ = await self.fetch("POST", "/app/action", session)
            self.assertEqual(refused.code, 403)
            _, token = await self.fetch("GET", "/app/csrf", session)
            done, body = await self.fetch(
                "POST", "/app/action", {**session, "X-CSRF-Token": token.decode()}
            )
            self.assertEqual((done.code, body), (200, b"done for alice"))

        return ensureDeferred(go())
