"""
The guard's own pages: the login form and logout for browsers, and the
bouncer service's HTTP face for clients that do not speak PB (C{POST
/token}, C{GET /whoami}).
"""

from __future__ import annotations

import json
import secrets
from html import escape
from typing import Any

from twisted.web.error import UnsupportedMethod
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

from twisted_keycard.web._guard import KeycardGuard, renderLater
from twisted_keycard.web._html import (
    finite,
    isoOrNone,
    page,
    timeHTML,
    wantsHTML,
)
from twisted_keycard.web._http import (
    CSRF_FIELD,
    HTML,
    NEEDS_TLS,
    SESSION,
    WebLogin,
    WebRefusal,
    forbidden,
    fromAnotherSite,
    methodNotAllowed,
    notFound,
    tokensMatch,
)

#: The login form's own cookie.
LOGIN_COOKIE = "__Host-keycard-login"
#: Bytes at most of a posted login form.
MAX_FORM = 8192
#: Characters at most of the C{next} target kept.
MAX_NEXT = 1024

_FORM = """<h1>Log in</h1>{message}
<form method="post" action="{action}">
<input type="hidden" name="{field}" value="{csrf}">
<input type="hidden" name="next" value="{next}">
<label>User name <input id="username" name="username" autocomplete="username"
 required></label>
<label>Password <input id="password" name="password" type="password"
 autocomplete="current-password" required></label>
<p><button id="submit" type="submit">Log in</button></p>
</form>"""
REFUSED = '<p class="error" id="refused">Login refused.</p>'
LOGGED_OUT = '<p class="notice" id="loggedout">You are logged out.</p>'
#: The query a logout sends the browser to the login page with.
LOGGED_OUT_QUERY = "loggedout=1"
_LANDING = """<h1>Logged in</h1>
<dl><dt>User</dt><dd><strong id="avatar">{avatar}</strong></dd>
<dt>Session ends</dt><dd>{expires}</dd></dl>
<form method="post" action="{action}">
<input type="hidden" name="{field}" value="{csrf}">
<p><button id="logout" type="submit">Log out</button></p>
</form>"""
_WHOAMI = """<h1>Who am I</h1>
<dl><dt>User</dt><dd><strong id="avatar">{avatar}</strong></dd>
<dt>Logged in by</dt><dd id="scheme">{scheme}</dd>
<dt>Login ends</dt><dd>{expires}</dd></dl>{footer}"""


class FacePage(Resource):
    """
    A page of the guard's: a method it does not take gets the project's
    405 (with C{Allow}), and a child it does not have the project's 404,
    rather than twisted.web's stock pages.
    """

    def render(self, request: IRequest) -> Any:
        hasGET = getattr(self, "render_GET", None) is not None
        if request.method == b"HEAD" and not hasGET:
            # Resource's own render_HEAD would call the missing render_GET.
            return methodNotAllowed(self._allowed(hasGET)).render(request)
        try:
            return super().render(request)
        except UnsupportedMethod:
            return methodNotAllowed(self._allowed(hasGET)).render(request)

    def _allowed(self, hasGET: bool) -> list[bytes]:
        methods = [
            name.removeprefix("render_").encode("ascii")
            for name in dir(self)
            if name.startswith("render_") and name.removeprefix("render_").isupper()
        ]
        return [m for m in methods if hasGET or m != b"HEAD"]

    def getChild(self, path: bytes, request: IRequest) -> Any:
        return notFound().resource()


def _html(request: IRequest, body: bytes, status: int = 200) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", HTML)
    request.setHeader(b"cache-control", b"no-store")
    return body


def landingPage(
    request: IRequest, guard: KeycardGuard, login: WebLogin, logoutPath: str
) -> bytes:
    """
    What a browser with a session sees on the login page and at the HTTP
    face's C{/}: who it is logged in as, when its session ends (ISO 8601,
    UTC, and in words), and a Log out button (a form that posts the
    session's CSRF token to C{logoutPath}).
    """
    assert login.csrfToken is not None, "a session has one"
    body = _LANDING.format(
        avatar=escape(login.avatarId),
        expires=timeHTML("expires", login.expires, guard.clock.seconds()),
        action=escape(logoutPath),
        field=CSRF_FIELD,
        csrf=escape(login.csrfToken),
    )
    return _html(request, page("Logged in", body))


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


class LoginPage(FacePage):
    """
    C{GET}: the login form (HTTPS only), saying "You are logged out" when
    a logout sent the browser there; to a browser with a session, when the
    guard's options name a C{logoutPath}, the landing page (see
    L{landingPage}): the avatar it is logged in as, when its session ends,
    and a button that logs it out (C{POST} to that path, with the
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
                return landingPage(request, self.guard, session, options.logoutPath)
        csrf = self._loginCookie(request)
        if csrf is None:
            csrf = secrets.token_urlsafe(32)
        request.responseHeaders.addRawHeader(b"set-cookie", _loginCookie(csrf, 3600))
        target = safeNext(_arg(request, b"next"))
        loggedOut = _arg(request, b"loggedout", 1) == "1"
        return self._page(request, 200, csrf, target, LOGGED_OUT if loggedOut else "")

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
        body = _FORM.format(
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
        return _html(request, page("Log in", body), status)


class LogoutPage(FacePage):
    """
    C{POST}: end the request's login (a session needs its CSRF token) and
    remove its keycard; a session's cookie is cleared and the browser sent
    to the login page (303), which says it is logged out; others get a
    204.
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
                joiner = "&" if "?" in loginPath else "?"
                location = loginPath + joiner + LOGGED_OUT_QUERY
                request.setHeader(b"location", location.encode("utf-8"))
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


class TokenPage(FacePage):
    """
    C{POST}: log in afresh with Basic (HTTPS only) or SCRAM-SHA-256 (RFC
    7804), and answer JSON: C{token}, C{keycardId}, C{expires} (POSIX
    time), C{expiresAt} (the same in ISO 8601, UTC) and C{avatarId}.  The
    keycard is not held afterwards: the token is the client's to keep,
    until it expires or is revoked.
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
                "expires": finite(login.expires),
                "expiresAt": isoOrNone(login.expires),
                "avatarId": login.avatarId,
            },
        )


class WhoamiPage(FacePage):
    """
    C{GET}: the request's login.  JSON (C{avatarId}, C{scheme}, C{expires}
    as POSIX time and C{expiresAt} as ISO 8601, UTC) to a client that asks
    for C{application/json}, C{*/*} or nothing in particular; to a browser
    (C{Accept} preferring C{text/html}, see L{wantsHTML}), the same as a
    page, the expiry also in words.
    """

    isLeaf = True

    def __init__(self, guard: KeycardGuard) -> None:
        super().__init__()
        self.guard = guard

    def render_GET(self, request: IRequest) -> Any:
        return renderLater(request, lambda: self._get(request))

    async def _get(self, request: IRequest) -> bytes:
        login = await self.guard.authenticate(request)
        request.setHeader(b"vary", b"Accept")
        if wantsHTML(request):
            home = self.guard.options.loginPath
            footer = (
                ""
                if home is None
                else f'<footer><a href="{escape(home)}">Home</a></footer>'
            )
            body = _WHOAMI.format(
                avatar=escape(login.avatarId),
                scheme=escape(login.scheme),
                expires=timeHTML("expires", login.expires, self.guard.clock.seconds()),
                footer=footer,
            )
            return _html(request, page("Who am I", body))
        return _json(
            request,
            {
                "avatarId": login.avatarId,
                "scheme": login.scheme,
                "expires": finite(login.expires),
                "expiresAt": isoOrNone(login.expires),
            },
        )


class _Home(FacePage):
    """
    The HTTP face's C{/}, where a login with no other C{next} lands: the
    landing page (see L{landingPage}) for a browser with a session, else
    a redirect (303) to the login page.  Any other unknown path is the
    project's 404.
    """

    def __init__(self, guard: KeycardGuard, loginPath: str, logoutPath: str) -> None:
        super().__init__()
        self.guard = guard
        self.loginPath = loginPath
        self.logoutPath = logoutPath

    def getChild(self, path: bytes, request: IRequest) -> Any:
        if path == b"":
            return self
        return super().getChild(path, request)

    def render_GET(self, request: IRequest) -> bytes:
        session = self.guard.session(request)
        if session is not None:
            return landingPage(request, self.guard, session, self.logoutPath)
        request.setResponseCode(303)
        request.setHeader(b"location", self.loginPath.encode("utf-8"))
        request.setHeader(b"cache-control", b"no-store")
        return b""


def httpFace(guard: KeycardGuard) -> Resource:
    """
    The resource tree of the service's HTTP face: C{/token}, C{/whoami},
    C{/logout} and C{/login}, and C{/}: the landing page for a browser
    with a session, else a redirect to C{/login}.  Other paths, and
    methods a page does not take, get the project's 404 and 405 pages.
    The guard's options should name C{/login} and C{/logout} as its
    C{loginPath} and C{logoutPath}.
    """
    root = _Home(guard, "/login", "/logout")
    root.putChild(b"token", TokenPage(guard))
    root.putChild(b"whoami", WhoamiPage(guard))
    root.putChild(b"logout", LogoutPage(guard))
    root.putChild(b"login", LoginPage(guard))
    return root
