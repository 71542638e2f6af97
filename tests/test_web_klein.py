"""
Klein routes behind the guard, in memory: the C{protect} decorator on a
function and on a method, and its refusals.
"""

from __future__ import annotations

import base64
from typing import Any

import treq
from klein import Klein
from treq.testing import StubTreq
from twisted.internet.defer import succeed
from twisted.web.iweb import IRequest

from twisted_keycard.web import WebLogin, protect

from ._web import PASSWORD
from .test_web_guard import GuardTestCase

AUTH = {
    "Authorization": "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
}


class KleinTests(GuardTestCase):
    def setUp(self) -> None:
        super().setUp()
        app = Klein()

        @app.route("/open")
        def public(request: IRequest) -> str:
            return "open"

        @app.route("/hello/<name>")
        @protect(self.app.guard)
        async def hello(request: IRequest, name: str, login: WebLogin) -> str:
            return f"{name}: {login.avatarId} via {login.scheme}"

        guard = self.app.guard

        class Reports:
            app = Klein()

            @app.route("/mine")
            @protect(guard)
            def mine(self, request: IRequest, login: WebLogin) -> Any:
                return succeed(f"reports of {login.avatarId}")

        self.stub = StubTreq(app.resource())
        self.reports = StubTreq(Reports().app.resource())

    def fetch_(self, stub: Any, url: str, **headers: str) -> tuple[int, bytes, Any]:
        response = self.successResultOf(stub.get(url, headers=headers))
        body: bytes = self.successResultOf(treq.content(response))
        return response.code, body, response.headers

    def test_protected(self) -> None:
        code, body, _ = self.fetch_(self.stub, "https://example.com/hello/x", **AUTH)
        self.assertEqual((code, body), (200, b"x: alice via Basic"))

    def test_refused(self) -> None:
        code, body, headers = self.fetch_(self.stub, "https://example.com/hello/x")
        self.assertEqual(code, 401)
        self.assertEqual(body, b"authentication required\n")
        self.assertIn(
            b'Bearer realm="keycard"', headers.getRawHeaders(b"www-authenticate")
        )
        code, _, _ = self.fetch_(self.stub, "https://example.com/open")
        self.assertEqual(code, 200)

    def test_method(self) -> None:
        code, body, _ = self.fetch_(self.reports, "https://example.com/mine", **AUTH)
        self.assertEqual((code, body), (200, b"reports of alice"))
        code, _, _ = self.fetch_(self.reports, "https://example.com/mine")
        self.assertEqual(code, 401)
