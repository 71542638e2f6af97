"""
Cookie sessions in memory: the login form and its double-submit cookie,
the session cookie's attributes, CSRF on state-changing requests, logout,
revocation and the bound on sessions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from treq.testing import RequestTraversalAgent
from twisted.internet.defer import fail

from twisted_keycard import KeycardDenied
from twisted_keycard.web import GuardOptions, httpFace

from ._web import PASSWORD, Reply
from .test_web_guard import APP, GuardTestCase

LOGIN = "https://example.com/login"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def cookieValue(reply: Reply, name: str) -> str:
    for header in reply.header("Set-Cookie"):
        if header.startswith(name + "="):
            return header.split(";")[0].split("=", 1)[1]
    raise AssertionError(f"no {name} cookie in {reply.header('Set-Cookie')}")


class SessionTestCase(GuardTestCase):
    def loginForm(self) -> tuple[str, str]:
        """
        GET the form: the login cookie, and the CSRF field, equal.
        """
        page = self.fetch("GET", LOGIN)
        self.assertEqual(page.code, 200)
        match = re.search(rb'name="csrf" value="([^"]+)"', page.body)
        assert match is not None
        cookie = cookieValue(page, "__Host-keycard-login")
        self.assertEqual(match.group(1).decode(), cookie)
        return cookie, match.group(1).decode()

    def postLogin(
        self, user: str = "alice", password: str = PASSWORD, nextPath: str = "/app"
    ) -> Reply:
        cookie, csrf = self.loginForm()
        body = urlencode(
            {"username": user, "password": password, "csrf": csrf, "next": nextPath}
        ).encode()
        headers = {**FORM, "Cookie": f"__Host-keycard-login={cookie}"}
        return self.fetch("POST", LOGIN, headers, body)

    def session(self, user: str = "alice") -> str:
        reply = self.postLogin(user)
        self.assertEqual(reply.code, 303, reply.body)
        return cookieValue(reply, "__Host-keycard")

    def withCookie(self, session: str, **headers: str) -> dict[str, str]:
        return {"Cookie": f"__Host-keycard={session}", **headers}

    def csrfOf(self, session: str) -> str:
        """
        The session's CSRF token, from a page of the application.
        """
        reply = self.get(APP + "/csrf", **self.withCookie(session))
        self.assertEqual(reply.code, 200)
        return reply.body.decode()


class LoginFormTests(SessionTestCase):
    def test_login(self) -> None:
        """
        A good login redirects to C{next} with a session cookie that is
        HttpOnly, Secure, SameSite=Strict, host-wide, and ends the login
        cookie; the session then reaches the avatar.
        """
        reply = self.postLogin()
        self.assertEqual(reply.header("Location"), ["/app"])
        cookies = reply.header("Set-Cookie")
        (session,) = [c for c in cookies if c.startswith("__Host-keycard=")]
        attributes = {a.strip().split("=")[0].lower() for a in session.split(";")[1:]}
        self.assertEqual(
            attributes, {"max-age", "path", "secure", "httponly", "samesite"}
        )
        self.assertIn("SameSite=Strict", session)
        self.assertIn("Path=/;", session)
        self.assertIn("Max-Age=600", session)
        self.assertIn("__Host-keycard-login=; Max-Age=0", " ".join(cookies))
        value = cookieValue(reply, "__Host-keycard")
        page = self.get(**self.withCookie(value))
        self.assertEqual((page.code, page.body), (200, b"hello, alice (session)"))

    def test_refusedAlike(self) -> None:
        """
        A wrong password and an unknown user get the same 401 and the form.
        """
        wrong = self.postLogin("alice", "wrong")
        unknown = self.postLogin("mallory", "wrong")
        self.assertEqual(wrong.code, 401)
        self.assertIn(b'id="refused"', wrong.body)
        self.assertEqual(
            re.sub(rb'value="[^"]{40,}"', b"", wrong.body),
            re.sub(rb'value="[^"]{40,}"', b"", unknown.body),
        )
        self.assertEqual(
            [h for h in wrong.shape()[1] if h[0] != b"Set-Cookie"],
            [h for h in unknown.shape()[1] if h[0] != b"Set-Cookie"],
        )

    def test_loginCSRF(self) -> None:
        """
        A post without the login cookie, or with a field that differs from
        it, is refused before any password check.
        """
        cookie, csrf = self.loginForm()
        fields = {"username": "alice", "password": PASSWORD}
        for headers, token in [
            (FORM, csrf),
            ({**FORM, "Cookie": f"__Host-keycard-login={cookie}"}, "x" * 43),
        ]:
            body = urlencode({**fields, "csrf": token}).encode()
            reply = self.fetch("POST", LOGIN, headers, body)
            self.assertEqual(reply.code, 403)
        self.assertEqual(self.app.bouncer.held, {})

    def test_needsTLS(self) -> None:
        self.assertEqual(self.fetch("GET", "http://example.com/login").code, 403)
        reply = self.fetch("POST", "http://example.com/login", FORM, b"username=a")
        self.assertEqual(reply.code, 403)

    def test_nextStaysOnSite(self) -> None:
        for target in ["https://evil.example/", "//evil.example/", "/\\evil"]:
            reply = self.postLogin(nextPath=target)
            self.assertEqual(reply.header("Location"), ["/"], target)


class CSRFTests(SessionTestCase):
    def test_stateChangeNeedsToken(self) -> None:
        """
        A POST authenticated by the session cookie needs the session's CSRF
        token, in the form or the X-CSRF-Token header.
        """
        session = self.session()
        action = APP + "/action"
        refused = self.fetch("POST", action, self.withCookie(session))
        self.assertEqual(refused.code, 403)
        wrong = self.withCookie(session, **{"X-CSRF-Token": "nope"})
        self.assertEqual(self.fetch("POST", action, wrong).code, 403)
        token = self.csrfOf(session)
        good = self.withCookie(session, **{"X-CSRF-Token": token})
        self.assertEqual(self.fetch("POST", action, good).body, b"done for alice")
        form = self.withCookie(session, **FORM)
        body = urlencode({"csrf": token}).encode()
        self.assertEqual(self.fetch("POST", action, form, body).code, 200)

    def test_crossSiteRefused(self) -> None:
        """
        Even with the token, a request the browser marks as cross-site is
        refused.
        """
        session = self.session()
        token = self.csrfOf(session)
        for marks in [
            {"Sec-Fetch-Site": "cross-site"},
            {"Sec-Fetch-Site": "same-site"},
            {"Origin": "https://evil.example"},
        ]:
            headers = self.withCookie(session, **{"X-CSRF-Token": token}, **marks)
            reply = self.fetch("POST", APP + "/action", headers)
            self.assertEqual(reply.code, 403, marks)


class SessionLifeTests(SessionTestCase):
    def test_revokedAtNextRequest(self) -> None:
        """
        Revoking the avatar ends its sessions: the next request is a 401
        that clears the cookie.
        """
        session = self.session()
        self.assertEqual(self.get(**self.withCookie(session)).code, 200)
        self.successResultOf(self.app.bouncer.revokeAvatar("alice"))
        reply = self.get(**self.withCookie(session))
        self.assertEqual(reply.code, 401)
        self.assertIn(
            "__Host-keycard=; Max-Age=0", " ".join(reply.header("Set-Cookie"))
        )

    def test_expired(self) -> None:
        session = self.session()
        self.app.clock.advance(600)
        self.assertEqual(self.get(**self.withCookie(session)).code, 401)
        self.assertEqual(self.app.guard.keycardIds(), [])

    def test_requestsRenew(self) -> None:
        """
        A request in the second half of the keycard's duration renews it
        for a duration from then, in the bouncer too; a browser that stops
        making requests loses its session, and the bouncer its keycard, a
        duration after its last renewal.
        """
        session = self.session()
        [keycardId] = self.app.guard.keycardIds()
        issued = self.app.bouncer.held[keycardId].expires
        self.app.clock.advance(299)
        self.assertEqual(self.get(**self.withCookie(session)).code, 200)
        self.assertEqual(self.app.bouncer.held[keycardId].expires, issued)
        self.app.clock.advance(2)
        self.assertEqual(self.get(**self.withCookie(session)).code, 200)
        renewed = self.app.clock.seconds() + 600
        self.assertEqual(self.app.bouncer.held[keycardId].expires, renewed)
        # Past the first expiry, still logged in.
        self.app.clock.advance(500)
        self.assertEqual(self.get(**self.withCookie(session)).code, 200)
        # Idle for a duration: gone, here and in the bouncer.
        self.app.clock.advance(600)
        self.assertEqual(self.get(**self.withCookie(session)).code, 401)
        self.assertEqual(self.app.bouncer.held, {})
        self.assertEqual(self.app.guard.keycardIds(), [])

    def test_renewalWithinMaxLifetime(self) -> None:
        """
        Past the bouncer's C{maxLifetime}, requests renew nothing: the
        session ends at its expiry however busy it is.
        """
        self.app = self.makeApp(GuardOptions(loginPath="/login"), maxLifetime=700.0)
        session = self.session()
        for _ in range(11):
            self.app.clock.advance(60)
            self.assertEqual(self.get(**self.withCookie(session)).code, 200)
        # Renewed at 360 s, but only to 700 s, its maximum lifetime, when
        # the bouncer expires it.
        self.app.clock.advance(41)
        self.assertEqual(self.get(**self.withCookie(session)).code, 401)
        self.assertEqual(self.app.bouncer.held, {})

    def test_renewalFailing(self) -> None:
        """
        A renewal the bouncer cannot make (unreachable) is tried again no
        sooner than a tenth of the duration later, with one log line each;
        the session ends at its expiry.
        """
        calls: list[list[str]] = []

        def unreachable(requesterName: str, keycardIds: Sequence[str]) -> Any:
            calls.append(list(keycardIds))
            return fail(KeycardDenied("the bouncer is unreachable"))

        self.app.bouncer.keepAlive = unreachable  # type: ignore[method-assign]
        session = self.session()
        self.app.clock.advance(301)
        for _ in range(5):
            self.assertEqual(self.get(**self.withCookie(session)).code, 200)
        self.assertEqual(len(calls), 1)
        self.app.clock.advance(60)
        self.assertEqual(self.get(**self.withCookie(session)).code, 200)
        self.assertEqual(len(calls), 2)
        self.assertEqual(len(self.flushLoggedErrors()), 0)
        self.app.clock.advance(240)
        self.assertEqual(self.get(**self.withCookie(session)).code, 401)

    def test_noRenewal(self) -> None:
        """
        With C{GuardOptions(renew=False)}, a session ends at its keycard's
        first expiry, whatever its requests.
        """
        self.app = self.makeApp(GuardOptions(loginPath="/login", renew=False))
        session = self.session()
        self.app.clock.advance(400)
        self.assertEqual(self.get(**self.withCookie(session)).code, 200)
        self.app.clock.advance(200)
        self.assertEqual(self.get(**self.withCookie(session)).code, 401)

    def test_logout(self) -> None:
        """
        POST /logout (with the CSRF token) removes the keycard, clears the
        cookie and sends the browser to the login page.
        """
        session = self.session()
        headers = self.withCookie(session, **{"X-CSRF-Token": self.csrfOf(session)})
        reply = self.fetch("POST", "https://example.com/logout", headers)
        self.assertEqual(
            (reply.code, reply.header("Location")), (303, ["/login?loggedout=1"])
        )
        self.assertEqual(self.app.bouncer.held, {})
        self.assertEqual(self.get(**self.withCookie(session)).code, 401)

    def test_logoutFromLoginPage(self) -> None:
        """
        With a C{logoutPath}, the login page shows a browser with a session
        whose it is, and a form that logs it out with the session's CSRF
        token (issue 23: the service's face exposed no token, so a browser
        could not log out).
        """
        self.app = self.makeApp(GuardOptions(loginPath="/login", logoutPath="/logout"))
        session = self.session()
        page = self.fetch("GET", LOGIN, self.withCookie(session))
        self.assertEqual(page.code, 200)
        self.assertIn(b'<strong id="avatar">alice</strong>', page.body)
        match = re.search(
            rb'<form method="post" action="/logout">\s*'
            rb'<input type="hidden" name="csrf" value="([^"]+)">',
            page.body,
        )
        assert match is not None, page.body
        self.assertEqual(match.group(1).decode(), self.csrfOf(session))
        body = urlencode({"csrf": match.group(1).decode()}).encode()
        headers = self.withCookie(session, **FORM)
        reply = self.fetch("POST", "https://example.com/logout", headers, body)
        self.assertEqual(
            (reply.code, reply.header("Location")), (303, ["/login?loggedout=1"])
        )
        self.assertEqual(self.app.bouncer.held, {})
        again = self.fetch("GET", LOGIN, self.withCookie(session))
        self.assertIn(b'id="username"', again.body)
        self.assertNotIn(b"alice", again.body)

    def test_loginPageWithoutLogoutPath(self) -> None:
        """
        Without a C{logoutPath}, a browser with a session gets the form.
        """
        session = self.session()
        page = self.fetch("GET", LOGIN, self.withCookie(session))
        self.assertIn(b'id="username"', page.body)

    def test_httpFaceHome(self) -> None:
        """
        The service's HTTP face sends a browser at C{/} (where a login with
        no other C{next} lands) to C{/login}.
        """
        agent = RequestTraversalAgent(httpFace(self.app.guard))
        d = agent.request(b"GET", b"https://example.com/")
        agent.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 303)
        self.assertEqual(response.headers.getRawHeaders(b"location"), [b"/login"])
        d = agent.request(b"GET", b"https://example.com/nothing")
        agent.flush()
        self.assertEqual(self.successResultOf(d).code, 404)

    def test_logoutNeedsToken(self) -> None:
        session = self.session()
        reply = self.fetch(
            "POST", "https://example.com/logout", self.withCookie(session)
        )
        self.assertEqual(reply.code, 403)
        self.assertEqual(len(self.app.bouncer.held), 1)

    def test_sessionsBounded(self) -> None:
        """
        Sessions are bounded: a new one pushes out the least recently used,
        whose keycard is removed.
        """
        self.app = self.makeApp(GuardOptions(loginPath="/login", maxSessions=2))
        first, second = self.session(), self.session()
        self.get(**self.withCookie(first))
        third = self.session()
        self.assertEqual(self.get(**self.withCookie(second)).code, 401)
        for kept in [first, third]:
            self.assertEqual(self.get(**self.withCookie(kept)).code, 200)
        self.assertEqual(len(self.app.bouncer.held), 2)

    def test_userFloodKeepsOthersSessions(self) -> None:
        """
        One user's logins, however many, push out only that user's own
        least recently used sessions: another user's session stays, in a
        full table as below a user's share.
        """
        users = {"alice": PASSWORD, "bob": PASSWORD}
        options = GuardOptions(loginPath="/login", maxSessions=4)
        self.app = self.makeApp(options, users=users)
        bob = self.session("bob")
        alice = [self.session() for _ in range(12)]
        self.assertEqual(self.get(**self.withCookie(bob)).code, 200)
        self.assertEqual(self.get(**self.withCookie(alice[-1])).code, 200)
        self.assertEqual(self.get(**self.withCookie(alice[0])).code, 401)
        self.assertEqual(self.app.guard.held.sessionsOf("alice"), 3)
        self.assertEqual(len(self.app.bouncer.held), 4)

    def test_sessionsPerAvatar(self) -> None:
        """
        A user at its share of sessions pushes out its own least recently
        used one, while the table has room for others.
        """
        users = {"alice": PASSWORD, "bob": PASSWORD}
        options = GuardOptions(
            loginPath="/login", maxSessions=100, maxSessionsPerAvatar=3
        )
        self.app = self.makeApp(options, users=users)
        bob = self.session("bob")
        alice = [self.session() for _ in range(5)]
        self.assertEqual(self.app.guard.held.sessionsOf("alice"), 3)
        self.assertEqual(self.get(**self.withCookie(bob)).code, 200)
        for gone in alice[:2]:
            self.assertEqual(self.get(**self.withCookie(gone)).code, 401)
        for kept in alice[2:]:
            self.assertEqual(self.get(**self.withCookie(kept)).code, 200)
        self.assertEqual(len(self.app.bouncer.held), 4)
