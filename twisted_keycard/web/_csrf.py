"""
Cross-site request forgery: what a browser sends on its own (a cookie, Basic
credentials it remembers) must not let another site change state.

Sessions use a synchronizer token: each session has a random token that
its forms carry (or scripts send in a header), compared in constant time.
For sessions and Basic alike, a state-changing request that the browser
marks as coming from another site (C{Sec-Fetch-Site}, else C{Origin}) is
refused.  The login form uses a double-submit cookie (see L{LoginPage}).
"""

from __future__ import annotations

import hmac

from twisted.web.iweb import IRequest

#: Methods that change nothing, which need no token.
SAFE_METHODS = frozenset([b"GET", b"HEAD", b"OPTIONS", b"TRACE"])


def changesState(request: IRequest) -> bool:
    return request.method not in SAFE_METHODS


def fromAnotherSite(request: IRequest, secure: bool) -> bool:
    """
    Whether the browser says the request comes from another site (or a
    sibling subdomain): C{Sec-Fetch-Site} other than C{same-origin} and
    C{none}, or without it, an C{Origin} other than this server's.
    """
    fetchSite = request.getHeader(b"sec-fetch-site")
    if fetchSite is not None:
        return bool(fetchSite.lower() not in (b"same-origin", b"none"))
    origin = request.getHeader(b"origin")
    if origin is None:
        return False
    host = request.getHeader(b"host") or b""
    scheme = b"https" if secure else b"http"
    return bool(origin.lower() != scheme + b"://" + host.lower())


def submittedToken(request: IRequest, field: str, header: str) -> str | None:
    """
    The CSRF token a request carries: its header, else its form field.
    """
    value = request.getHeader(header.encode("ascii"))
    if value is None:
        args = request.args or {}
        values = args.get(field.encode("ascii"))
        value = values[0] if values else None
    if value is None:
        return None
    try:
        return str(value.decode("ascii"))
    except UnicodeDecodeError:
        return None


def tokensMatch(expected: str | None, submitted: str | None) -> bool:
    """
    Whether a submitted token is the expected one, in constant time.
    """
    if expected is None or submitted is None:
        return False
    return hmac.compare_digest(expected.encode("ascii"), submitted.encode("ascii"))
