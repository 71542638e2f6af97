"""
The bouncer service's HTTP face, for clients that do not speak PB (curl, a
browser, other languages): C{POST /token} (Basic or SCRAM) answers a token,
C{GET /whoami} says who the request's login is, C{POST /logout} ends it,
and C{/login} is the browsers' form.
"""

from __future__ import annotations

import json
import math
from typing import Any

from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

from twisted_keycard.web._forms import LoginPage, LogoutPage
from twisted_keycard.web._guard import KeycardGuard
from twisted_keycard.web._refusals import WebRefusal
from twisted_keycard.web._resources import renderLater


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


def httpFace(guard: KeycardGuard) -> Resource:
    """
    The resource tree of the service's HTTP face: C{/token}, C{/whoami},
    C{/logout} and C{/login}.
    """
    root = Resource()
    root.putChild(b"token", TokenPage(guard))
    root.putChild(b"whoami", WhoamiPage(guard))
    root.putChild(b"logout", LogoutPage(guard))
    root.putChild(b"login", LoginPage(guard))
    return root
