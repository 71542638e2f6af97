"""
Klein routes behind the guard: a decorator that checks the request first
and hands the route its L{WebLogin}.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.web.iweb import IRequest

from twisted_keycard.web._guard import KeycardGuard
from twisted_keycard.web._refusals import WebRefusal


def protect(guard: KeycardGuard) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """
    Decorate a Klein route (below C{@app.route}) so that it runs only for
    requests the guard lets in, with the login as the keyword argument
    C{login}; a refusal (401, 403, 429, 503) is rendered instead::

        @app.route("/reports")
        @protect(guard)
        def reports(request, login):
            return f"hello, {login.avatarId}"

    The route may be a method (C{self, request, ...}) or a function, and
    may return anything Klein takes (text, a resource, a Deferred, a
    coroutine).
    """

    def decorate(route: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(route)
        def guarded(*args: Any, **kwargs: Any) -> Deferred[Any]:
            request = _requestIn(args)

            async def run() -> Any:
                try:
                    login = await guard.authenticate(request)
                except WebRefusal as refusal:
                    return refusal.render(request)
                result = route(*args, login=login, **kwargs)
                if isinstance(result, Deferred) or hasattr(result, "__await__"):
                    result = await result
                return result

            return ensureDeferred(run())

        return guarded

    return decorate


def _requestIn(args: tuple[Any, ...]) -> IRequest:
    for arg in args[:2]:
        if IRequest.providedBy(arg):
            request: IRequest = arg
            return request
    raise TypeError("protect() decorates a Klein route taking the request")
