"""
A guarded web application for tests: an in-process bouncer (SCRAM
verifiers that also check plain passwords, tokens, throttling) behind a
L{KeycardGuard}, with a realm of avatar resources, the login and logout
pages and the token endpoint; reached in memory (no sockets) or served by
a L{KeycardSite}.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
import treq
from treq.testing import RequestTraversalAgent, _SynchronousProducer
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest, IResponse
from twisted.web.resource import IResource, Resource
from zope.interface import implementer

from twisted_keycard import Bouncer, MemoryStore
from twisted_keycard.bouncer import ExchangeLimits, Throttle, TokenPolicy, Upkeep
from twisted_keycard.passwords import HashPool
from twisted_keycard.scram import SCRAMPasswordChecker, SCRAMVerifiers, Verifier
from twisted_keycard.web import (
    GuardedResource,
    GuardOptions,
    KeycardGuard,
    LoginPage,
    LogoutPage,
    TokenPage,
    WebLogin,
    httpFace,
)

PASSWORD = "correct horse battery staple"
START = 1_800_000_000.0


def inline(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """
    Runs a blocking call at once: the unit tests' thread pool.
    """
    return maybeDeferred(f, *args)


def inlinePool() -> HashPool:
    """
    A hash pool that runs each hash at once, in the caller's thread.
    """
    return HashPool(runner=maybeDeferred)


class Avatar(Resource):
    """
    What a logged-in user sees: a greeting, and an action that changes
    state.
    """

    def __init__(self, login: WebLogin) -> None:
        super().__init__()
        self.login = login
        self.putChild(b"action", _Action(login))
        self.putChild(b"csrf", _CSRF(login))

    def getChild(self, path: bytes, request: IRequest) -> Resource:
        return self

    def render_GET(self, request: IRequest) -> bytes:
        return f"hello, {self.login.avatarId} ({self.login.scheme})".encode()


class _CSRF(Resource):
    """
    The session's CSRF token, as a page would embed it in its forms.
    """

    isLeaf = True

    def __init__(self, login: WebLogin) -> None:
        super().__init__()
        self.login = login

    def render_GET(self, request: IRequest) -> bytes:
        return (self.login.csrfToken or "").encode()


class _Action(Resource):
    isLeaf = True

    def __init__(self, login: WebLogin) -> None:
        super().__init__()
        self.login = login

    def render_POST(self, request: IRequest) -> bytes:
        return f"done for {self.login.avatarId}".encode()


@implementer(IRealm)
@attrs.define
class WebRealm:
    loggedIn: list[str] = attrs.field(factory=list)
    loggedOut: list[str] = attrs.field(factory=list)

    def requestAvatar(
        self, avatarId: Any, mind: object, *interfaces: Any
    ) -> tuple[Any, IResource, Callable[[], None]]:
        assert IResource in interfaces and isinstance(mind, WebLogin)
        self.loggedIn.append(avatarId)
        return IResource, Avatar(mind), lambda: self.loggedOut.append(avatarId)


def makeBouncer(
    clock: IReactorTime,
    store: MemoryStore | None = None,
    *,
    users: Mapping[str, str] | None = None,
    duration: float = 600.0,
    throttle: Throttle | None = None,
    upkeep: Upkeep = Upkeep(),  # noqa: B008 - frozen
    realThreads: bool = False,
    maxLifetime: float | None = None,
) -> Bouncer:
    users = {"alice": PASSWORD} if users is None else users
    verifiers = SCRAMVerifiers(
        {name: Verifier.fromPassword(pw) for name, pw in users.items()}
    )
    return Bouncer(
        [
            verifiers,
            SCRAMPasswordChecker(
                verifiers, hashPool=None if realThreads else inlinePool()
            ),
        ],
        store if store is not None else MemoryStore(),
        clock=clock,
        duration=duration,
        tokens=TokenPolicy(),
        throttle=throttle,
        upkeep=upkeep,
        limits=ExchangeLimits(timeout=30.0),
        maxLifetime=maxLifetime,
    )


def application(guard: KeycardGuard, realm: WebRealm) -> Resource:
    """
    The tree: C{/app} (the realm's avatars), C{/login}, C{/logout},
    C{/token}.
    """
    root = Resource()
    root.putChild(b"app", GuardedResource(guard, Portal(realm)))
    root.putChild(b"login", LoginPage(guard))
    root.putChild(b"logout", LogoutPage(guard))
    root.putChild(b"token", TokenPage(guard))
    return root


@attrs.define
class Reply:
    """
    A response, read whole.
    """

    code: int
    headers: Headers
    body: bytes

    def header(self, name: str) -> list[str]:
        return [v.decode() for v in self.headers.getRawHeaders(name.encode(), [])]

    def shape(self) -> tuple[int, list[tuple[bytes, list[bytes]]], bytes]:
        """
        Everything but the C{Date}: what must be byte-identical.
        """
        headers = sorted(
            (k, list(v))
            for k, v in self.headers.getAllRawHeaders()
            if k.lower() != b"date"
        )
        return self.code, headers, self.body


@attrs.define
class WebApp:
    """
    A guarded application on a L{Clock}, reached in memory: no cookie jar,
    no redirects followed.
    """

    clock: Clock
    bouncer: Bouncer
    guard: KeycardGuard
    realm: WebRealm
    agent: RequestTraversalAgent

    @classmethod
    def make(
        cls,
        options: GuardOptions | None = None,
        *,
        face: bool = False,
        **bouncerOptions: Any,
    ) -> WebApp:
        """
        @param face: serve the bouncer service's HTTP face (L{httpFace}, its
            guard with the service's C{/login} and C{/logout}) rather than
            L{application}.
        """
        clock = Clock()
        clock.advance(START)
        bouncer = makeBouncer(clock, **bouncerOptions)
        bouncer.startService()
        if options is None:
            logoutPath = "/logout" if face else None
            options = GuardOptions(loginPath="/login", logoutPath=logoutPath)
        guard = KeycardGuard(bouncer, clock=clock, options=options)
        realm = WebRealm()
        tree = httpFace(guard) if face else application(guard, realm)
        agent = RequestTraversalAgent(tree)
        return cls(clock, bouncer, guard, realm, agent)

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Deferred[Reply]:
        raw = Headers({k: [v] for k, v in (headers or {}).items()})
        producer = _SynchronousProducer(body) if body is not None else None
        d = self.agent.request(method.encode(), url.encode(), raw, producer)
        self.agent.flush()

        async def read() -> Reply:
            response: IResponse = await d
            body: bytes = await treq.content(response)
            return Reply(response.code, response.headers, body)

        result = Deferred.fromCoroutine(read())
        self.agent.flush()
        return result
