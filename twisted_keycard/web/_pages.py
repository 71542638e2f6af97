"""
The guard's own pages: the login form and logout for browsers, and the
bouncer service's HTTP face for clients that do not speak PB (C{POST
/token}, C{GET /whoami}).
"""

from __future__ import annotations

import json
import math
import secrets
from html import escape
from typing import Any

from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

from twisted_keycard.web._guard import KeycardGuard, renderLater
from twisted_keycard.web._http import (
    CSRF_FIELD,
    NEEDS_TLS,
    SESSION,
    WebLogin,
    WebRefusal,
    forbidden,
    fromAnotherSite,
    tokensMatch,
)

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
_LOGGED_IN = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Logged in</title></head>
<body><h1>Logged in</h1>
<p>Logged in as <strong id="avatar">{avatar}</strong>.</p>
<form method="post" action="{action}">
<input type="hidden" name="{field}" value="{csrf}">
<p><button id="logout" type="submit">Log out</button></p>
</form></body></html>
"""


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
    C{GET}: the login form (HTTPS only); to a browser with a session, when
    the guard's options name a C{logoutPath}, the avatar it is logged in
    as and a button that logs it out (C{POST} to that path, with the
    session's CSRF token).  C{POST}: check the user name and password with
    the guard's bouncer; on success hold a session, set its cookie and
    redirect (303) to C{next}; on refusal a 401 with the form again, the
    same bytes whatever was wrong.
    """

    isLeaf = True

    def __init__(self, guard: KeycardGuard) -> None:
        super().__init__()
        self.guard = guard

    def render_GET(self, request: IRequest) -> bytes:
        options = self.guard.options
        if not options.proxies.isSecure(request):
            return forbidden(NEEDS_TLS.decode().strip()).render(request)
        if options.logoutPath is not None:
            session = self.guard.session(request)
            if session is not None:
                return self._loggedIn(request, options.logoutPath, session)
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

    def _loggedIn(self, request: IRequest, logoutPath: str, login: WebLogin) -> bytes:
        assert login.csrfToken is not None, "a session has one"
        page = _LOGGED_IN.format(
            avatar=escape(login.avatarId),
            action=escape(logoutPath),
            field=CSRF_FIELD,
            csrf=escape(login.csrfToken),
        )
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return page.encode("utf-8")

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


def _json(request: IRequest, value: dict[str, Any]) -> bytes:
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(value, sort_keys=True).encode("utf-8") + b"\n"


class TokenPage(Resource):
    """
    C{POST}: log in afresh with Basic (HTTPS only) or SCRAM-SHA-256 (RFC
    7804), and answer JSON: C{token}, C{keycardId}, C{expires} (POSIX
    time) and C{avatarId}.  The keycard is not held afterwards: the token
    is the client's to keep, until it expires or is revoked.
    """

    isLeaf = True

    def __init__(self, guard: KeycardGuard) -> None:
        super().__init__()
        self.guard = guard

    def render_POST(self, request: IRequest) -> Any:
        return renderLater(request, lambda: self._post(request))

    async def _post(self, request: IRequest) -> bytes:
        login = await self.guard.login(request)
        if login.token is None:
            raise WebRefusal(501, b"this bouncer issues no tokens\n")
        return _json(
            request,
            {
                "token": login.token,
                "keycardId": login.keycardId,
                "expires": _finite(login.expires),
                "avatarId": login.avatarId,
            },
        )


class WhoamiPage(Resource):
    """
    C{GET}: JSON naming the request's login: C{avatarId}, C{scheme} and
    C{expires}.
    """

    isLeaf = True

    def __init__(self, guard: KeycardGuard) -> None:
        super().__init__()
        self.guard = guard

    def render_GET(self, request: IRequest) -> Any:
        return renderLater(request, lambda: self._get(request))

    async def _get(self, request: IRequest) -> bytes:
        login = await self.guard.authenticate(request)
        return _json(
            request,
            {
                "avatarId": login.avatarId,
                "scheme": login.scheme,
                "expires": _finite(login.expires),
            },
        )


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


class _Home(Resource):
    """
    The HTTP face's C{/}: a browser sent there (after logging in, with no
    other C{next}) goes on to the login page, which shows its login.
    """

    def __init__(self, loginPath: str) -> None:
        super().__init__()
        self.loginPath = loginPath

    def getChild(self, path: bytes, request: IRequest) -> Resource:
        if path == b"":
            return self
        child: Resource = super().getChild(path, request)
        return child

    def render_GET(self, request: IRequest) -> bytes:
        request.setResponseCode(303)
        request.setHeader(b"location", self.loginPath.encode("utf-8"))
        request.setHeader(b"cache-control", b"no-store")
        return b""


def httpFace(guard: KeycardGuard) -> Resource:
    """
    The resource tree of the service's HTTP face: C{/token}, C{/whoami},
    C{/logout} and C{/login}, and C{/} sending browsers to C{/login}.  The
    guard's options should name C{/login} and C{/logout} as its
    C{loginPath} and C{logoutPath}.
    """
    root = _Home("/login")
    root.putChild(b"token", TokenPage(guard))
    root.putChild(b"whoami", WhoamiPage(guard))
    root.putChild(b"logout", LogoutPage(guard))
    root.putChild(b"login", LoginPage(guard))
    return root
