"""
The bouncer service's HTTP face as a small product, in memory with a
L{Clock}: the landing page at C{/} after a login (who, until when, a Log
out button that works), C{/whoami} as HTML for browsers and JSON for
programs (C{expires} and C{expiresAt}), the project's own 404, 405 and
refusal pages in one style, never twisted.web's stock pages.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from twisted_keycard._printable import isoTime
from twisted_keycard.bouncer import Throttle
from twisted_keycard.tokens import DEFAULT_SKEW
from twisted_keycard.web import GuardOptions
from twisted_keycard.web._html import STYLE, inWords, wantsHTML
from twisted_keycard.web._http import forbidden, throttled, unavailable

from ._web import PASSWORD, START, Reply, WebApp
from .test_web_guard import basic, bearer
from .test_web_sessions import FORM, SessionTestCase, cookieValue

BASE = "https://example.com"
#: What Chromium sends for a page.
BROWSER = {
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,"
    "image/avif,image/webp,*/*;q=0.8"
}
#: Text of twisted.web's stock pages, which a browser must never see.
STOCK = [b"No Such Resource", b"Your browser approached me", b"Method Not Allowed"]


class FaceTestCase(SessionTestCase):
    def setUp(self) -> None:
        self.app = self.makeApp()

    def makeApp(self, options: GuardOptions | None = None, **kw: Any) -> WebApp:
        kw.setdefault("duration", 3600.0)
        return super().makeApp(options, face=True, **kw)

    def assertOwnPage(self, reply: Reply, title: str) -> None:
        """
        C{reply} is one of the project's HTML pages: its stylesheet, its
        title, nothing of twisted.web's stock pages.
        """
        self.assertEqual(reply.header("Content-Type"), ["text/html; charset=utf-8"])
        self.assertIn(f"<title>{title}</title>".encode(), reply.body)
        self.assertIn(STYLE.encode(), reply.body)
        for stock in STOCK:
            self.assertNotIn(stock, reply.body)

    def landing(self, session: str) -> Reply:
        reply = self.fetch("GET", BASE + "/", self.withCookie(session, **BROWSER))
        self.assertEqual(reply.code, 200, reply.body)
        return reply

    def csrfOf(self, session: str) -> str:
        """
        The session's CSRF token, from the landing page's logout form.
        """
        match = re.search(rb'name="csrf" value="([^"]+)"', self.landing(session).body)
        assert match is not None
        return match.group(1).decode()


class LandingTests(FaceTestCase):
    def test_homeWithoutSession(self) -> None:
        """
        C{/} sends a browser without a session to the login form.
        """
        reply = self.fetch("GET", BASE + "/", BROWSER)
        self.assertEqual((reply.code, reply.header("Location")), (303, ["/login"]))

    def test_loginLandsOnHome(self) -> None:
        """
        A login with no other C{next} lands on C{/}: the landing page says
        who is logged in and when the session ends, in ISO 8601 (UTC) and
        in words, counted on the guard's clock.
        """
        reply = self.postLogin(nextPath="")
        self.assertEqual((reply.code, reply.header("Location")), (303, ["/"]))
        session = cookieValue(reply, "__Host-keycard")
        self.app.clock.advance(60)
        page = self.landing(session)
        self.assertOwnPage(page, "Logged in")
        self.assertEqual(page.header("Cache-Control"), ["no-store"])
        self.assertIn(b'<strong id="avatar">alice</strong>', page.body)
        ends = isoTime(START + 3600)
        self.assertEqual(ends, "2027-01-15T09:00:00+00:00")
        self.assertIn(
            f'<time id="expires" datetime="{ends}">{ends}</time>', page.body.decode()
        )
        self.assertIn(b'<span id="expires-words">in 59 minutes</span>', page.body)
        # The login page shows a browser with a session the same page.
        login = self.fetch("GET", BASE + "/login", self.withCookie(session))
        self.assertEqual(login.body, page.body)

    def test_logoutFromLanding(self) -> None:
        """
        The landing page's Log out form (the session's CSRF token, posted to
        C{/logout}) ends the session and its keycard; the browser is sent
        to the login form, which says it is logged out; C{/} then sends it
        to log in again.
        """
        session = self.session()
        page = self.landing(session).body
        match = re.search(
            rb'<form method="post" action="/logout">\s*'
            rb'<input type="hidden" name="csrf" value="([^"]+)">',
            page,
        )
        assert match is not None, page
        body = urlencode({"csrf": match.group(1).decode()}).encode()
        headers = self.withCookie(session, **FORM, **BROWSER)
        reply = self.fetch("POST", BASE + "/logout", headers, body)
        self.assertEqual(
            (reply.code, reply.header("Location")), (303, ["/login?loggedout=1"])
        )
        self.assertIn(
            "__Host-keycard=; Max-Age=0", " ".join(reply.header("Set-Cookie"))
        )
        self.assertEqual(self.app.bouncer.held, {})
        out = self.fetch("GET", BASE + "/login?loggedout=1", BROWSER)
        self.assertOwnPage(out, "Log in")
        self.assertIn(b'id="loggedout">You are logged out.</p>', out.body)
        self.assertIn(b'id="username"', out.body)
        home = self.fetch("GET", BASE + "/", self.withCookie(session, **BROWSER))
        self.assertEqual((home.code, home.header("Location")), (303, ["/login"]))

    def test_loginFormStyled(self) -> None:
        """
        The login form, and its refusal, are pages of the same style; the
        form says nothing of a logout unless a logout sent it there.
        """
        form = self.fetch("GET", BASE + "/login", BROWSER)
        self.assertOwnPage(form, "Log in")
        self.assertNotIn(b"logged out", form.body)
        refused = self.postLogin("alice", "wrong")
        self.assertEqual(refused.code, 401)
        self.assertOwnPage(refused, "Log in")
        self.assertIn(b'id="refused"', refused.body)


class WhoamiTests(FaceTestCase):
    def test_json(self) -> None:
        """
        To curl (C{*/*}), to a client that sends no C{Accept}, and to one
        asking for C{application/json}, C{/whoami} is JSON: C{expires} the
        POSIX time as before, and C{expiresAt} beside it in ISO 8601.
        """
        grant = self.token()
        self.assertEqual(grant["expires"], START + 3600)
        self.assertEqual(grant["expiresAt"], "2027-01-15T09:00:00+00:00")
        accepts: list[str | None] = [
            None,
            "*/*",
            "application/json",
            "text/html;q=0.5, */*",
        ]
        for accept in accepts:
            headers = bearer(str(grant["token"]))
            if accept is not None:
                headers["Accept"] = accept
            reply = self.fetch("GET", BASE + "/whoami", headers)
            self.assertEqual(reply.code, 200, accept)
            self.assertEqual(reply.header("Content-Type"), ["application/json"])
            self.assertEqual(reply.header("Vary"), ["Accept"])
            self.assertEqual(
                json.loads(reply.body),
                {
                    "avatarId": "alice",
                    "scheme": "Bearer",
                    "expires": START + 3600,
                    "expiresAt": "2027-01-15T09:00:00+00:00",
                },
                accept,
            )

    def test_bearerHeldUntilTokenExpires(self) -> None:
        """
        A Bearer login is held until its token's expiry, read from the
        C{kc2} token: later requests reuse it rather than logging in again
        (issue 27: read as a C{kc1} token, its expiry was in 1970, and each
        request logged in anew).
        """
        grant = self.token()
        headers = bearer(str(grant["token"]))
        first = json.loads(self.fetch("GET", BASE + "/whoami", headers).body)
        self.assertEqual(first["expires"], grant["expires"])
        held = self.app.guard.keycardIds()
        self.assertEqual(len(held), 1)
        self.app.clock.advance(60)
        self.assertEqual(self.fetch("GET", BASE + "/whoami", headers).code, 200)
        self.assertEqual(self.app.guard.keycardIds(), held)
        # Past the token's expiry, and the bouncers' tolerated skew.
        self.app.clock.advance(3540 + DEFAULT_SKEW + 1)
        self.assertEqual(self.fetch("GET", BASE + "/whoami", headers).code, 401)

    def test_html(self) -> None:
        """
        To a browser, C{/whoami} is a page: who, how, until when.
        """
        session = self.session()
        # Not yet in the second half of the duration: not renewed.
        self.app.clock.advance(1799)
        reply = self.fetch("GET", BASE + "/whoami", self.withCookie(session, **BROWSER))
        self.assertEqual(reply.code, 200)
        self.assertOwnPage(reply, "Who am I")
        self.assertEqual(reply.header("Vary"), ["Accept"])
        self.assertIn(b'<strong id="avatar">alice</strong>', reply.body)
        self.assertIn(b'<dd id="scheme">session</dd>', reply.body)
        self.assertIn(b"2027-01-15T09:00:00+00:00", reply.body)
        self.assertIn(b"in 30 minutes", reply.body)
        self.assertIn(b'<a href="/login">', reply.body)


class ErrorPageTests(FaceTestCase):
    def test_notFound(self) -> None:
        """
        An unknown path is the project's 404: a page for a browser, one
        line for a program.
        """
        for path in ["/nothing", "/nothing/deeper"]:
            page = self.fetch("GET", BASE + path, BROWSER)
            self.assertEqual(page.code, 404, path)
            self.assertOwnPage(page, "Not found")
        plain = self.fetch("GET", BASE + "/nothing")
        self.assertEqual(
            (plain.code, plain.body), (404, b"there is no page at this address\n")
        )
        self.assertEqual(plain.header("Content-Type"), ["text/plain; charset=utf-8"])

    def test_methodNotAllowed(self) -> None:
        """
        A method a page does not take is the project's 405, with C{Allow}:
        C{GET /logout} (a browser following a link), C{PUT /whoami}.
        """
        for method, path, allowed in [
            ("GET", "/logout", "POST"),
            ("PUT", "/whoami", "GET, HEAD"),
            ("DELETE", "/token", "POST"),
            ("HEAD", "/logout", "POST"),
            ("POST", "/", "GET, HEAD"),
        ]:
            page = self.fetch(method, BASE + path, BROWSER)
            self.assertEqual(page.code, 405, path)
            if method != "HEAD":
                self.assertOwnPage(page, "Method not allowed")
                self.assertIn(f"This page takes {allowed} only".encode(), page.body)
            self.assertEqual(page.header("Allow"), [allowed], path)
        plain = self.fetch("GET", BASE + "/logout")
        self.assertEqual(
            (plain.code, plain.body), (405, b"this page takes POST only\n")
        )

    def test_head(self) -> None:
        """
        C{HEAD} of a C{GET} page is still answered as twisted.web does.
        """
        reply = self.fetch("HEAD", BASE + "/login")
        self.assertEqual((reply.code, reply.body), (200, b""))

    def test_unauthorized(self) -> None:
        """
        A browser without a login at C{/whoami} gets the 401 page, linking
        to the form.
        """
        page = self.fetch("GET", BASE + "/whoami", BROWSER)
        self.assertEqual(page.code, 401)
        self.assertOwnPage(page, "Login required")
        self.assertIn(b'<a id="login" href="/login?next=/whoami">', page.body)

    def test_forbidden(self) -> None:
        """
        A logout without its CSRF token is the 403 page for a browser, one
        line for a program; the session stays.
        """
        session = self.session()
        page = self.fetch("POST", BASE + "/logout", self.withCookie(session, **BROWSER))
        self.assertEqual(page.code, 403)
        self.assertOwnPage(page, "Forbidden")
        plain = self.fetch("POST", BASE + "/logout", self.withCookie(session))
        self.assertEqual(plain.code, 403)
        self.assertNotIn(b"<", plain.body)
        self.assertEqual(len(self.app.bouncer.held), 1)

    def test_throttled(self) -> None:
        """
        A throttled login through the form is the 429 page, with its
        C{Retry-After}.
        """
        self.app = self.makeApp(throttle=Throttle(perAccount=1, perAddress=100))
        self.assertEqual(self.get(BASE + "/whoami", **basic("alice", "x")).code, 401)
        cookie, csrf = self.loginForm()
        fields = {"username": "alice", "password": PASSWORD, "csrf": csrf}
        headers = {**FORM, **BROWSER, "Cookie": f"__Host-keycard-login={cookie}"}
        page = self.fetch("POST", BASE + "/login", headers, urlencode(fields).encode())
        self.assertEqual(page.code, 429)
        self.assertOwnPage(page, "Too many attempts")
        self.assertEqual(len(page.header("Retry-After")), 1)


class RefusalRenderingTests(SynchronousTestCase):
    def render(self, refusal: object, accept: str | None) -> DummyRequest:
        request = DummyRequest([b""])
        if accept is not None:
            request.requestHeaders.setRawHeaders(b"accept", [accept])
        request.write(refusal.render(request))  # type: ignore[attr-defined]
        return request

    def test_eachRefusal(self) -> None:
        """
        Each plain-text refusal of the guard is a styled page for a browser
        and its one line for anything else, with the same status and
        headers.
        """
        for refusal, title in [
            (forbidden("missing or wrong CSRF token"), "Forbidden"),
            (throttled(30, "too many failed logins"), "Too many attempts"),
            (unavailable(60), "Unavailable"),
        ]:
            page = self.render(refusal, BROWSER["Accept"])
            body = b"".join(page.written)
            self.assertEqual(page.responseCode, refusal.status)
            self.assertIn(f"<title>{title}</title>".encode(), body)
            self.assertIn(STYLE.encode(), body)
            message = refusal.body.strip()
            self.assertIn(message[:1].upper() + message[1:], body)
            plain = self.render(refusal, "*/*")
            self.assertEqual(b"".join(plain.written), refusal.body)
            for request in [page, plain]:
                self.assertEqual(
                    request.responseHeaders.getRawHeaders(b"retry-after"),
                    [v for k, v in refusal.headers if k == b"retry-after"] or None,
                )

    def test_messageEscaped(self) -> None:
        page = self.render(forbidden("<script>x</script>"), "text/html")
        self.assertIn(b"&lt;script&gt;x&lt;/script&gt;", b"".join(page.written))
        self.assertNotIn(b"<script>", b"".join(page.written))


class NegotiationTests(SynchronousTestCase):
    def wants(self, accept: str | None) -> bool:
        request: Any = DummyRequest([b""])
        if accept is not None:
            request.requestHeaders.setRawHeaders(b"accept", [accept])
        return wantsHTML(request)

    def test_wantsHTML(self) -> None:
        for html in [
            BROWSER["Accept"],
            "text/html",
            "TEXT/HTML;q=0.9, */*;q=0.1",
            "text/*",
            "application/json;q=0.1, text/html",
        ]:
            self.assertTrue(self.wants(html), html)
        accepts: list[str | None] = [
            None,
            "",
            "*/*",
            "application/json",
            "text/html, application/json",
            "text/html;q=0.5, application/json",
            "text/html;q=0",
            "text/html;q=x",
            "text/html;q=nan",
            "text/html;q=0.5, */*",
            "application/*",
            "image/png",
        ]
        for accept in accepts:
            self.assertFalse(self.wants(accept), accept)

    def test_inWords(self) -> None:
        for seconds, words in [
            (-5, "now"),
            (0.5, "now"),
            (1, "in 1 second"),
            (59.9, "in 59 seconds"),
            (60, "in 1 minute"),
            (3540, "in 59 minutes"),
            (3600, "in 60 minutes"),
            (7199, "in 119 minutes"),
            (7200, "in 2 hours"),
            (86400, "in 24 hours"),
            (3 * 86400 + 5, "in 3 days"),
            (float("inf"), "never"),
        ]:
            self.assertEqual(inWords(seconds), words, seconds)
