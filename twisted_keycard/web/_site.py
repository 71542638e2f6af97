"""
A twisted.web site whose connections bound what a stranger can make the
server hold before any login: the request line and headers, and the body.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.web import http, server
from twisted.web.resource import IResource

#: Bytes at most of a request line and all its headers.
MAX_HEADER_BYTES = 16_384
#: Header lines at most in one request.
MAX_HEADERS = 64
#: Bytes at most of a request body.
MAX_BODY = 65_536

_TOO_LARGE = (
    b"HTTP/1.1 413 Content Too Large\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 24\r\nConnection: close\r\n\r\n"
    b"request body too large\r\n"
)


@attrs.frozen
class SiteLimits:
    """
    What one request may carry.

    @ivar maxHeaderBytes: bytes of the request line and headers together
        (also the longest single line); past it the connection gets a 400
        and is closed.
    @ivar maxHeaders: header lines; past it, the same.
    @ivar maxBody: bytes of body, announced (C{Content-Length}) or received
        (chunked); past it the connection gets a 413 and is closed.
    """

    maxHeaderBytes: int = MAX_HEADER_BYTES
    maxHeaders: int = MAX_HEADERS
    maxBody: int = MAX_BODY


class _BoundedRequest(server.Request):
    """
    A request that stops reading a body over its site's limit.
    """

    maxBody = MAX_BODY
    _received = 0
    _refused = False

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.maxBody:
            self._refuse()
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > self.maxBody:
            self._refuse()
            return
        super().handleContentChunk(data)

    def _refuse(self) -> None:
        self._refused = True
        channel: Any = self.channel
        if channel is not None and channel.transport is not None:
            channel.transport.write(_TOO_LARGE)
            channel.loseConnection()


class _BoundedChannel(http.HTTPChannel):
    """
    An HTTP/1.1 channel with its own header limits.
    """

    def __init__(self, limits: SiteLimits) -> None:
        super().__init__()
        self.MAX_LENGTH = limits.maxHeaderBytes
        self.totalHeadersSize = limits.maxHeaderBytes
        self.maxHeaders = limits.maxHeaders


class KeycardSite(server.Site):
    """
    A L{server.Site} (HTTP/1.1) that bounds each request's headers and body
    (see L{SiteLimits}).  Use it for any site a L{KeycardGuard} protects:
    the guard bounds its own tables, this bounds what reaches them.
    """

    def __init__(
        self,
        resource: IResource,
        limits: SiteLimits = SiteLimits(),
        **kwargs: Any,
    ) -> None:
        """
        @param kwargs: passed to L{server.Site} (C{logPath}, C{timeout},
            C{reactor}, ...).
        """
        super().__init__(resource, **kwargs)
        self.limits = limits
        maxBody = limits.maxBody

        class Request(_BoundedRequest):
            pass

        Request.maxBody = maxBody
        self.requestFactory = Request

    def protocol(self) -> http.HTTPChannel:  # type: ignore[override]
        return _BoundedChannel(self.limits)
