"""
A twisted.web site whose connections bound what a stranger can make the
server hold before any login: the request line and headers, and the body;
the time to send each request, and to wait between them; and how many
connections not yet authenticated it holds, in a L{ConnectionBudget} it
may share with a PB listener.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource

from twisted_keycard._printable import printable
from twisted_keycard._shares import positiveOrNone
from twisted_keycard.keycard import normalizeAddress
from twisted_keycard.pb import TOO_MANY, ConnectionBudget, ConnectionLimits
from twisted_keycard.web._http import ProxyTrust

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


_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)

#: Seconds a refused connection is kept at most, half closed, so that the
#: client reads its 503 before the close (rather than a reset).
REFUSAL_LINGER = 1.0


_positive = [attrs.validators.instance_of(int), attrs.validators.ge(1)]


@attrs.frozen
class SiteLimits:
    """
    What one request, and one connection, may take.

    @ivar maxHeaderBytes: bytes of the request line and headers together
        (also the longest single line); past it the connection gets a 400
        and is closed.
    @ivar maxHeaders: header lines; past it, the same.
    @ivar maxBody: bytes of body, announced (C{Content-Length}) or received
        (chunked); past it the connection gets a 413 and is closed.
    @ivar requestTimeout: seconds from a request's first byte to its last
        (request line, headers and body); past it the connection gets a
        408 and is closed, however slowly the bytes keep coming.  C{None}
        for no deadline.
    @ivar idleTimeout: seconds a connection waits for the first byte of a
        request, once connected or once the previous response is sent;
        past it the connection is closed.  C{None} for no bound but
        twisted.web's own (which every byte restarts).
    @ivar loginTimeout: seconds a connection has until one of its requests
        is authenticated (see L{connectionAuthenticated}); past it, it is
        closed (after the response in progress, if any).  C{None} for no
        deadline.
    @ivar retryAfter: seconds the C{Retry-After} of the 503 says, that a
        connection refused for the caps of the L{ConnectionBudget} gets.
    """

    maxHeaderBytes: int = attrs.field(default=MAX_HEADER_BYTES, validator=_positive)
    maxHeaders: int = attrs.field(default=MAX_HEADERS, validator=_positive)
    maxBody: int = attrs.field(default=MAX_BODY, validator=_positive)
    requestTimeout: float | None = attrs.field(default=10.0, validator=positiveOrNone)
    idleTimeout: float | None = attrs.field(default=60.0, validator=positiveOrNone)
    loginTimeout: float | None = attrs.field(default=10.0, validator=positiveOrNone)
    retryAfter: int = attrs.field(default=10, validator=_positive)


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
    An HTTP/1.1 channel with its own header limits and deadlines, counted
    in its site's L{ConnectionBudget} until a request on it is
    authenticated.
    """

    def __init__(
        self, limits: SiteLimits, budget: ConnectionBudget, clock: IReactorTime
    ) -> None:
        super().__init__()
        self.limits = limits
        self.MAX_LENGTH = limits.maxHeaderBytes
        self.totalHeadersSize = limits.maxHeaderBytes
        self.maxHeaders = limits.maxHeaders
        self._budget = budget
        self._clock = clock
        #: The client's address group, for the budget and the log.
        self._group = ""
        #: Whether the connection counts in the budget (not authenticated).
        self._stranger = False
        #: Whether a request has begun and is not all received yet.
        self._receiving = False
        self._deadline: IDelayedCall | None = None
        self._loginDeadline: IDelayedCall | None = None

    def enter(self, group: str) -> None:
        """
        Count this connection, from address group C{group}, in the budget
        until a request on it is authenticated.
        """
        self._group = group
        self._stranger = True
        self._budget.enter(self, group)

    def connectionMade(self) -> None:
        super().connectionMade()
        timeout = self.limits.loginTimeout
        if self._stranger and timeout is not None:
            self._loginDeadline = self._clock.callLater(timeout, self._noLogin)
        self._awaitRequest()

    def authenticated(self) -> None:
        """
        A request on this connection was authenticated: it no longer counts
        in the budget, and has no login deadline.
        """
        if not self._stranger:
            return
        self._stranger = False
        self._budget.leave(self)
        _cancel(self._loginDeadline)
        self._loginDeadline = None

    def evict(self) -> None:
        """
        Close the connection at once: a newer one from its address group
        takes its place in the budget.
        """
        self._stranger = False
        self._note("closing {peer}: a newer connection from its address came")
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if data and not self._receiving and not self._handlingRequest:
            self._receiving = True
            self._setDeadline(self.limits.requestTimeout, self._tooSlow)
        super().dataReceived(data)

    def allContentReceived(self) -> None:
        self._receiving = False
        self._setDeadline(None, self._tooSlow)
        super().allContentReceived()

    def requestDone(self, request: IRequest) -> None:
        super().requestDone(request)
        transport: Any = self.transport
        if (
            self.persistent
            and not self._handlingRequest
            and transport is not None
            and not transport.disconnecting
        ):
            self._awaitRequest()

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        A request line or header line over the limit: a 400, and the
        connection closed.
        """
        self._respondToBadRequestAndDisconnect()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._stranger:
            self._stranger = False
            self._budget.leave(self)
        self._setDeadline(None, self._tooSlow)
        _cancel(self._loginDeadline)
        self._loginDeadline = None
        super().connectionLost(reason)

    def _awaitRequest(self) -> None:
        self._receiving = False
        self._setDeadline(self.limits.idleTimeout, self._idle)

    def _setDeadline(self, seconds: float | None, then: Any) -> None:
        _cancel(self._deadline)
        self._deadline = None
        if seconds is not None:
            self._deadline = self._clock.callLater(seconds, then)

    def _idle(self) -> None:
        self._deadline = None
        self.loseConnection()

    def _tooSlow(self) -> None:
        self._deadline = None
        self._note(
            "closing {peer}: no whole request within {timeout} s",
            timeout=self.limits.requestTimeout,
        )
        assert self.transport is not None
        self.transport.write(_TIMED_OUT)
        self.loseConnection()

    def _noLogin(self) -> None:
        self._loginDeadline = None
        if not self._stranger:
            return
        self._note(
            "closing {peer}: no login within {timeout} s",
            timeout=self.limits.loginTimeout,
        )
        if self._handlingRequest:
            # Closed once its response is sent.
            self.persistent = False
        else:
            self.loseConnection()

    def _note(self, format: str, **fields: object) -> None:
        transport: Any = self.transport
        peer = None if transport is None else transport.getPeer()
        host = getattr(peer, "host", peer)
        self._budget.note(
            self._group, format, LogLevel.info, peer=printable(host), **fields
        )


def _cancel(call: IDelayedCall | None) -> None:
    if call is not None and call.active():
        call.cancel()


class _Refused(Protocol):
    """
    A connection refused for the caps of the budget: a 503 with a one-line
    body and C{Retry-After}, then the connection closed, once the client
    has had the time to read it.
    """

    def __init__(self, retryAfter: int, clock: IReactorTime) -> None:
        self._retryAfter = retryAfter
        self._clock = clock
        self._linger: IDelayedCall | None = None

    def connectionMade(self) -> None:
        transport: Any = self.transport
        body = TOO_MANY.encode("ascii") + b"\n"
        transport.write(
            b"HTTP/1.1 503 Service Unavailable\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nRetry-After: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (len(body), self._retryAfter, body)
        )
        halfClose = getattr(transport, "loseWriteConnection", None)
        if halfClose is None:
            transport.loseConnection()
            return
        # Closing with the request unread would reset the connection, and
        # the client might lose the 503: close the sending side, and read
        # (and drop) what comes until the client closes, for a moment.
        halfClose()
        self._linger = self._clock.callLater(REFUSAL_LINGER, transport.abortConnection)

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        _cancel(self._linger)
        self._linger = None


def connectionAuthenticated(request: IRequest) -> None:
    """
    C{request} was authenticated: its connection no longer counts in its
    L{KeycardSite}'s budget of connections not yet authenticated, and has
    no login deadline.  The guard calls this; nothing happens for a request
    of another site.
    """
    channel = getattr(request, "channel", None)
    if isinstance(channel, _BoundedChannel):
        channel.authenticated()


class KeycardSite(server.Site):
    """
    A L{server.Site} (HTTP/1.1) that bounds each request's headers, body
    and time to arrive, the wait between requests, and the connections not
    yet authenticated it holds (see L{SiteLimits}, L{ConnectionBudget}).
    Use it for any site a L{KeycardGuard} protects: the guard bounds its
    own tables, this bounds what reaches them.

    A connection counts as authenticated once one of its requests was (the
    guard says so: a session cookie, a Bearer token, Basic, SCRAM, or the
    login form).  Until then it is counted in the budget, in all and per
    client address group: a newcomer from a group at its cap closes that
    group's oldest such connection; one refused (the budget full, and its
    group the largest) gets a 503 saying why, with C{Retry-After}.
    """

    def __init__(
        self,
        resource: IResource,
        limits: SiteLimits = SiteLimits(),
        *,
        budget: ConnectionBudget | None = None,
        proxies: ProxyTrust = ProxyTrust(),  # noqa: B008 - frozen
        **kwargs: Any,
    ) -> None:
        """
        @param budget: the budget of connections not yet authenticated,
            shared with the service's other faces (its PB listener); a new
            one with L{ConnectionLimits}' default caps if C{None}.
        @param proxies: the reverse proxies in front of the site (those of
            the guard's L{GuardOptions}): their connections are exempt
            from the cap per address group, since every client of a proxy
            comes from its address.
        @param kwargs: passed to L{server.Site} (C{logPath}, C{timeout},
            C{reactor}, ...).
        """
        super().__init__(resource, **kwargs)
        self.limits = limits
        clock: IReactorTime = self.reactor
        if budget is None:
            budget = ConnectionBudget(ConnectionLimits(), clock)
        self.budget = budget
        self.proxies = proxies
        maxBody = limits.maxBody

        class Request(_BoundedRequest):
            pass

        Request.maxBody = maxBody
        self.requestFactory = Request

    def buildProtocol(self, addr: Any) -> Any:
        """
        A channel for a new connection, counted in the budget; or, if the
        budget refuses it, a protocol that answers 503 and closes.
        """
        host = getattr(addr, "host", None)
        proxy = isinstance(host, str) and self.proxies.trusts(normalizeAddress(host))
        group = self.budget.admit(addr, perAddress=not proxy)
        if group is None:
            return _Refused(self.limits.retryAfter, self.reactor)
        channel = super().buildProtocol(addr)
        assert isinstance(channel, _BoundedChannel)
        channel.enter(group)
        return channel

    def protocol(self) -> http.HTTPChannel:  # type: ignore[override]
        return _BoundedChannel(self.limits, self.budget, self.reactor)
