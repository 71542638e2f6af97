"""
The answers the guard gives instead of the resource: 401 with its
challenges, 429 with C{Retry-After}, 403, 400.  Each is an exception that
renders itself; its bytes depend on the request's shape, never on which
part of a credential was wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from zope.interface import implementer

from twisted_keycard.error import KeycardError

Header = tuple[bytes, bytes]


class WebRefusal(KeycardError):
    """
    Raised by the guard when a request does not reach the resource.

    @ivar status: the HTTP status.
    @ivar headers: headers to add (C{WWW-Authenticate}, C{Retry-After},
        C{Set-Cookie}).
    @ivar body: the body.
    @ivar contentType: its type.
    """

    def __init__(
        self,
        status: int,
        body: bytes,
        headers: Sequence[Header] = (),
        contentType: bytes = b"text/plain; charset=utf-8",
    ) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.headers = list(headers)
        self.contentType = contentType

    def render(self, request: IRequest) -> bytes:
        """
        Write the status and headers into C{request}.

        @return: the body.
        """
        request.setResponseCode(self.status)
        for name, value in self.headers:
            request.responseHeaders.addRawHeader(name, value)
        request.setHeader(b"content-type", self.contentType)
        request.setHeader(b"cache-control", b"no-store")
        return self.body

    def resource(self) -> IResource:
        """
        A leaf resource that renders this refusal.
        """
        return _RefusalResource(self)


@implementer(IResource)
class _RefusalResource:
    isLeaf = True

    def __init__(self, refusal: WebRefusal) -> None:
        self._refusal = refusal

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError()

    def render(self, request: IRequest) -> bytes:
        return self._refusal.render(request)


UNAUTHORIZED = b"authentication required\n"
NEEDS_TLS = b"this way of logging in needs HTTPS\n"


def unauthorized(
    challenges: Sequence[bytes],
    *,
    loginURL: bytes | None = None,
    html: bool = False,
    body: bytes = UNAUTHORIZED,
    extra: Sequence[Header] = (),
) -> WebRefusal:
    """
    A 401 listing C{challenges} in C{WWW-Authenticate} headers (one each);
    for a browser (C{html}) of a guard with a login page, an HTML page
    linking to it.
    """
    headers = [(b"www-authenticate", c) for c in challenges]
    headers.extend(extra)
    if html and loginURL is not None:
        link = escape(loginURL.decode("ascii", "replace"))
        page = (
            "<!DOCTYPE html>\n<html><head><title>Login required</title></head>"
            f'<body><h1>Login required</h1><p><a id="login" href="{link}">'
            "Log in</a></p></body></html>\n"
        )
        return WebRefusal(401, page.encode(), headers, b"text/html; charset=utf-8")
    return WebRefusal(401, body, headers)


def throttled(retryAfter: int, message: str) -> WebRefusal:
    """
    A 429: the bouncer will not take a login now.
    """
    return WebRefusal(
        429,
        message.encode("utf-8") + b"\n",
        [(b"retry-after", str(retryAfter).encode("ascii"))],
    )


def forbidden(message: str) -> WebRefusal:
    """
    A 403: the login is good, the request is not (CSRF).
    """
    return WebRefusal(403, message.encode("utf-8") + b"\n")


def unavailable(retryAfter: int) -> WebRefusal:
    """
    A 503: the bouncer could not be asked.
    """
    return WebRefusal(
        503,
        b"the bouncer is unavailable; try again later\n",
        [(b"retry-after", str(retryAfter).encode("ascii"))],
    )
