"""
The login form and logout for browsers: a user name and password posted
over HTTPS become a keycard held by the guard, named by a session cookie.

The form is protected from login CSRF by a double-submit cookie: the page
sets a random value in a cookie (HttpOnly, Secure, SameSite=Strict) and in
a hidden field, and a post must carry both, equal.
"""

from __future__ import annotations

import secrets
from html import escape
from typing import Any

from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

from twisted_keycard.web._csrf import fromAnotherSite, tokensMatch
from twisted_keycard.web._guard import KeycardGuard
from twisted_keycard.web._options import CSRF_FIELD, SESSION
from twisted_keycard.web._refusals import NEEDS_TLS, WebRefusal, forbidden
from twisted_keycard.web._resources import renderLater

#: The login form's own cookie.
LOGIN_COOKIE = "__Host-keycard-login"
#: Bytes at most of a posted login form.
MAX_FORM = 8192
#: Characters at most of the C{next} target kept.
MAX_NEXT = 1024

_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Log in</title></head>
<body><h1>Log in</h1>{message}
<form method="post" action="{action}">
<input type="hidden" name="{field}" value="{csrf}">
<input type="hidden" name="next" value="{next}">
<p><label>User name <input id="username" name="username" autocomplete="username"
 required></label></p>
<p><label>Password <input id="password" name="password" type="password"
 autocomplete="current-password" required></label></p>
<p><button id="submit" type="submit">Log in</button></p>
</form></body></html>
"""
REFUSED = '<p id="refused">Login refused.</p>'


def _arg(request: IRequest, name: bytes, limit: int = MAX_NEXT) -> str:
    values = (request.args or {}).get(name) or [b""]
    value: bytes = values[0][:limit]
    return value.decode("utf-8", "replace")


def safeNext(target: str) -> str:
    """
    Where to go after logging in: a path on this site, else C{/}.
    """
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


class LoginPage(Resource):
    """
    C{GET}: the login form (HTTPS only).  C{POST}: check the user name and
    password with the guard's bouncer; on success hold a session, set its
    cookie and redirect (303) to C{next}; on refusal a 401 with the form
    again, the same bytes whatever was wrong.
    """

    isLeaf = True

    def __init__(self, guard: KeycardGuard) -> None:
        super().__init__()
        self.guard = guard

    def render_GET(self, request: IRequest) -> bytes:
        if not self.guard.options.proxies.isSecure(request):
            return forbidden(NEEDS_TLS.decode().strip()).render(request)
        csrf = self._loginCookie(request)
        if csrf is None:
            csrf = secrets.token_urlsafe(32)
        request.responseHeaders.addRawHeader(b"set-cookie", _loginCookie(csrf, 3600))
        target = safeNext(_arg(request, b"next"))
        return self._page(request, 200, csrf, target, "")

    def render_POST(self, request: IRequest) -> Any:
        return renderLater(request, lambda: self._post(request))

    async def _post(self, request: IRequest) -> bytes:
        options = self.guard.options
        if not options.proxies.isSecure(request):
            raise forbidden(NEEDS_TLS.decode().strip())
        if _bodySize(request) > MAX_FORM:
            raise WebRefusal(413, b"login form too large\n")
        csrf = self._loginCookie(request)
        if fromAnotherSite(request, True) or not tokensMatch(
            csrf, _arg(request, CSRF_FIELD.encode(), 64)
        ):
            raise forbidden("missing or wrong CSRF token")
        assert csrf is not None
        target = safeNext(_arg(request, b"next"))
        username = _arg(request, b"username", 1024)
        password = _arg(request, b"password", 2048)
        try:
            issued = await self.guard.checkPassword(request, username, password)
        except WebRefusal as refusal:
            if refusal.status != 401:
                raise
            return self._page(request, 401, csrf, target, REFUSED, refusal)
        cookie, session = self.guard.newSession(issued)
        maxAge = max(0, int(session.expires - self.guard.clock.seconds()))
        headers = request.responseHeaders
        headers.addRawHeader(
            b"set-cookie", self.guard.answers.cookieHeader(cookie, maxAge)
        )
        headers.addRawHeader(b"set-cookie", _loginCookie("", 0))
        request.setResponseCode(303)
        request.setHeader(b"location", target.encode("utf-8"))
        request.setHeader(b"cache-control", b"no-store")
        return b""

    def _loginCookie(self, request: IRequest) -> str | None:
        value: bytes | None = request.getCookie(LOGIN_COOKIE.encode("ascii"))
        if value is None or not 20 <= len(value) <= 64:
            return None
        return value.decode("ascii", "replace")

    def _page(
        self,
        request: IRequest,
        status: int,
        csrf: str,
        target: str,
        message: str,
        refusal: WebRefusal | None = None,
    ) -> bytes:
        action = self.guard.options.loginPath or ""
        page = _PAGE.format(
            message=message,
            action=escape(action),
            field=CSRF_FIELD,
            csrf=escape(csrf),
            next=escape(target),
        )
        if refusal is not None:
            for name, value in refusal.headers:
                if name == b"www-authenticate" and not value.startswith(b"Basic"):
                    request.responseHeaders.addRawHeader(name, value)
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return page.encode("utf-8")


class LogoutPage(Resource):
    """
    C{POST}: end the request's login (a session needs its CSRF token) and
    remove its keycard; a session's cookie is cleared and the browser sent
    to the login page (303), others get a 204.
    """

    isLeaf = True

    def __init__(self, guard: KeycardGuard) -> None:
        super().__init__()
        self.guard = guard

    def render_POST(self, request: IRequest) -> Any:
        return renderLater(request, lambda: self._post(request))

    async def _post(self, request: IRequest) -> bytes:
        login = await self.guard.authenticate(request)
        await self.guard.logout(login)
        request.setHeader(b"cache-control", b"no-store")
        loginPath = self.guard.options.loginPath
        if login.scheme == SESSION:
            name, value = self.guard.answers.clearCookie()
            request.responseHeaders.addRawHeader(name, value)
            if loginPath is not None:
                request.setResponseCode(303)
                request.setHeader(b"location", loginPath.encode("utf-8"))
                return b""
        request.setResponseCode(204)
        return b""


def _loginCookie(value: str, maxAge: int) -> bytes:
    return (
        f"{LOGIN_COOKIE}={value}; Max-Age={maxAge}; Path=/; Secure; HttpOnly;"
        " SameSite=Strict"
    ).encode("ascii")


def _bodySize(request: IRequest) -> int:
    content: Any = request.content
    if content is None:
        return 0
    position = content.tell()
    content.seek(0, 2)
    size = int(content.tell())
    content.seek(position)
    return size
