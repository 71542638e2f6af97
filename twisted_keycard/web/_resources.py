"""
Resources behind the guard: L{GuardedResource} wraps a realm's avatar
resources as twisted.web's L{HTTPAuthSessionWrapper} does, and
L{renderLater} runs a coroutine that renders a response.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET
from twisted.web.util import DeferredResource
from zope.interface import implementer

from twisted_keycard._printable import printable
from twisted_keycard.web._guard import KeycardGuard
from twisted_keycard.web._refusals import WebRefusal

log = Logger()


def renderLater(
    request: IRequest, render: Callable[[], Coroutine[Any, Any, bytes]]
) -> int:
    """
    Render C{request} with the body C{render()} returns: a L{WebRefusal} it
    raises is rendered instead, anything else is a logged 500.

    @return: C{NOT_DONE_YET}, for a resource's C{render} to return.
    """
    finished: list[object] = []
    finishing: Any = request
    finishing.notifyFinish().addBoth(finished.append)

    def write(body: bytes) -> None:
        if not finished:
            request.write(body)
            request.finish()

    def failed(failure: Any) -> None:
        if failure.check(WebRefusal):
            write(failure.value.render(request))
            return
        log.failure("rendering a guarded request failed", failure)
        if not finished:
            request.setResponseCode(500)
            write(b"internal error\n")

    Deferred.fromCoroutine(render()).addCallbacks(write, failed)
    return NOT_DONE_YET


@implementer(IResource)
class GuardedResource:
    """
    An L{IResource} that checks every request with a L{KeycardGuard} and
    then serves the avatar resource the portal's realm gives for the
    avatar id (the interface asked is L{IResource}, the C{mind} is the
    L{WebLogin}), calling the realm's logout when the request ends.  A
    refusal is rendered instead (401, 403, 429, 503).

    It takes no path segment: put it in a tree where the avatar's own
    resources should be.
    """

    isLeaf = False

    def __init__(self, guard: KeycardGuard, portal: Portal) -> None:
        self.guard = guard
        self.portal = portal

    def render(self, request: IRequest) -> Any:
        return self._avatarResource(request).render(request)

    def getChildWithDefault(self, path: bytes, request: IRequest) -> IResource:
        # Transparent, as twisted.web.guard's wrapper: the avatar resource
        # gets the segment.
        request.postpath.insert(0, request.prepath.pop())
        return self._avatarResource(request)

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("the realm gives the children")

    def _avatarResource(self, request: IRequest) -> IResource:
        return DeferredResource(Deferred.fromCoroutine(self._avatar(request)))

    async def _avatar(self, request: IRequest) -> IResource:
        try:
            login = await self.guard.authenticate(request)
        except WebRefusal as refusal:
            return refusal.resource()
        # twisted.cred types avatar ids as bytes; ours are text.
        avatarId: Any = login.avatarId
        try:
            answer: Any = await maybeDeferred(
                self.portal.realm.requestAvatar, avatarId, login, IResource
            )
            _, avatar, logout = answer
        except Exception:
            log.failure(
                "realm refused avatar {avatarId}", avatarId=printable(login.avatarId)
            )
            return WebRefusal(500, b"internal error\n").resource()
        finishing: Any = request
        finishing.notifyFinish().addBoth(lambda _: logout())
        resource: IResource = avatar
        return resource
