"""
How the guard says no: the 401 with a challenge per scheme it offers (RFC
7235), and the session cookie's C{Set-Cookie} headers.
"""

from __future__ import annotations

from urllib.parse import quote

from twisted.web.iweb import IRequest

from twisted_keycard.web._headers import BASIC, BEARER, SCRAM, challenge
from twisted_keycard.web._options import GuardOptions
from twisted_keycard.web._refusals import WebRefusal, unauthorized

#: The longest request target a 401 sends back in its login link.
MAX_NEXT = 1024


class Answers:
    """
    The guard's 401s and cookies, from its options.
    """

    def __init__(self, options: GuardOptions) -> None:
        self.options = options

    def unauthorized(
        self, request: IRequest, *, bearerError: bool = False, body: bytes | None = None
    ) -> WebRefusal:
        """
        The 401 for C{request}: a challenge per scheme offered (Basic only
        over TLS), and for a browser of a guard with a login page, a link
        to it (and no Basic challenge, so the browser shows the page rather
        than its own password prompt).
        """
        realm = ("realm", self.options.realm)
        accept = request.getHeader(b"accept") or b""
        html = b"text/html" in accept and self.options.loginPath is not None
        challenges = []
        for scheme in self.options.schemes:
            if scheme == BEARER:
                error = [("error", "invalid_token")] if bearerError else []
                challenges.append(challenge(BEARER, [realm, *error]))
            elif scheme == SCRAM:
                challenges.append(challenge(SCRAM, [realm]))
            elif not html and self.options.proxies.isSecure(request):
                challenges.append(challenge(BASIC, [realm, ("charset", "UTF-8")]))
        loginURL = None
        if self.options.loginPath is not None:
            loginURL = self.options.loginPath.encode("ascii")
            target = request.uri
            if len(target) <= MAX_NEXT and target.startswith(b"/"):
                loginURL += b"?next=" + quote(target, safe="/").encode("ascii")
        extra = []
        if request.getCookie(self.options.cookieName.encode("ascii")) is not None:
            extra.append(self.clearCookie())
        return unauthorized(
            challenges,
            loginURL=loginURL,
            html=html,
            extra=extra,
            **({} if body is None else {"body": body}),
        )

    def clearCookie(self) -> tuple[bytes, bytes]:
        """
        A C{Set-Cookie} header that removes the session cookie.
        """
        return (b"set-cookie", self.cookieHeader("", 0))

    def cookieHeader(self, value: str, maxAge: int) -> bytes:
        """
        The session cookie: HttpOnly, Secure, SameSite=Strict, for the
        whole host.
        """
        return (
            f"{self.options.cookieName}={value}; Max-Age={maxAge}; Path=/;"
            " Secure; HttpOnly; SameSite=Strict"
        ).encode("ascii")
