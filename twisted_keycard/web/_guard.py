"""
The web guard: a requester that checks each HTTP request's credentials
with the bouncer, holds what it issues (cookie sessions, cached
credentials) until the bouncer ends it, and the resources and Klein routes
behind it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import secrets
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

import attrs
from twisted.cred.error import LoginFailed
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET
from twisted.web.util import DeferredResource
from zope.interface import implementer

from twisted_keycard._printable import printable
from twisted_keycard._shares import FairShares
from twisted_keycard.bouncer import IBouncer, IRequester
from twisted_keycard.error import KeycardDenied, KeycardError, ProtocolError
from twisted_keycard.keycard import Keycard, KeycardState
from twisted_keycard.scram import SCRAMKeycard
from twisted_keycard.tokens import TokenKeycard, keycardIdOf
from twisted_keycard.web._http import (
    BASIC,
    BEARER,
    CSRF_FIELD,
    CSRF_HEADER,
    NEEDS_TLS,
    SCRAM,
    SESSION,
    Answers,
    Credentials,
    GuardOptions,
    WebLogin,
    WebRefusal,
    challenge,
    changesState,
    decodeBasic,
    encodeData,
    forbidden,
    fromAnotherSite,
    keycardFrom,
    parseAuthorization,
    passwordKeycard,
    scramKeycard,
    submittedToken,
    throttled,
    tokenExpires,
    tokensMatch,
    unauthorized,
    unavailable,
)
from twisted_keycard.web._site import connectionAuthenticated


class BouncerLink:
    """
    Hands keycards from HTTP requests to a bouncer.

    @ivar inFlight: the keycards of requests in progress that end with them.
    """

    log = Logger()

    def __init__(
        self,
        bouncer: IBouncer,
        requesterName: str,
        options: GuardOptions,
        answers: Answers,
    ) -> None:
        self.bouncer = bouncer
        self.requesterName = requesterName
        self.options = options
        self.answers = answers
        self.inFlight: set[str] = set()

    async def ask(
        self, request: IRequest, keycard: Keycard, bearerError: bool = False
    ) -> Keycard:
        """
        Hand a keycard from C{request} to the bouncer.

        @raise WebRefusal: a 401 if it is refused, a 429 if the bouncer will
            not take it now, a 503 if the bouncer failed.
        """
        keycard.address = self.options.proxies.clientAddress(request)
        keycard.requesterName = self.requesterName
        keycard.channelBindings = None
        try:
            result = await self.bouncer.authenticate(keycard)
        except KeycardDenied as e:
            # The throttle says when its window lets a login in again; other
            # denials (a busy bouncer, a quota) are worth a try sooner.
            later = getattr(e, "retryAfter", None)
            wait = self.options.retryAfter if later is None else math.ceil(later)
            raise throttled(max(1, wait), str(e)) from None
        except LoginFailed:
            raise self.answers.unauthorized(request, bearerError=bearerError) from None
        except Exception:
            self.log.failure(
                "the bouncer failed a keycard from {address}",
                address=printable(keycard.address),
            )
            raise unavailable(self.options.retryAfter) from None
        if result.state is KeycardState.AUTHENTICATED and (
            result.id is None or result.avatarId is None
        ):
            raise unavailable(self.options.retryAfter)
        return result

    def oneShot(self, request: IRequest, issued: Keycard, scheme: str) -> WebLogin:
        """
        A login whose keycard is removed when the request ends.
        """
        keycardId = issued.id
        assert keycardId is not None and issued.avatarId is not None
        self.inFlight.add(keycardId)

        def ended(result: object) -> None:
            self.inFlight.discard(keycardId)
            self.remove(keycardId)

        finishing: Any = request
        finishing.notifyFinish().addBoth(ended)
        return WebLogin(
            issued.avatarId,
            keycardId,
            scheme,
            issued.expires,
            token=issued.token,
            oneShot=True,
        )

    def remove(self, keycardId: str) -> None:
        d = self.bouncer.removeKeycardId(keycardId)
        d.addErrback(lambda f: self.log.failure("removing a keycard failed", f))


#: Random bytes in a session cookie and in a CSRF token.
SECRET_BYTES = 32


@attrs.define(eq=False)
class HeldLogin:
    """
    A keycard the guard holds for a client.

    @ivar keycardId: the keycard's id.
    @ivar avatarId: its avatar.
    @ivar expires: POSIX time after which it no longer counts, whatever the
        bouncer says.
    @ivar csrfToken: for a session, the token its state-changing requests
        must carry; C{None} otherwise.
    @ivar tokenId: for a Bearer login, the keycard id of the token
        presented (the parent of C{keycardId}).
    @ivar duration: the keycard's duration, for which a renewal renews it;
        C{None} if it is not renewed.
    @ivar renewing: whether a renewal is on its way.
    @ivar retryAt: after a failed renewal, no other is tried before this
        POSIX time.
    """

    keycardId: str
    avatarId: str
    expires: float
    csrfToken: str | None = attrs.field(default=None, repr=False)
    tokenId: str | None = None
    duration: float | None = None
    renewing: bool = False
    retryAt: float = 0.0


#: Held logins by key, least recently used first, shared fairly between
#: avatars.
_Table = FairShares[bytes, str, HeldLogin]


class HeldLogins:
    """
    The guard's sessions (by the SHA-256 of their cookie, so the table holds
    no cookie) and cached credentials (by an HMAC under a key of this
    process, so it holds no token or password), with an index by keycard id.
    Each table is shared fairly between avatars (see L{FairShares}): a
    user's new login pushes out that user's least recently used one, never
    another user's, unless the table is full and the other holds more.

    @ivar onDropped: called with each login pushed out of a full table (its
        keycard should be removed from the bouncer).
    """

    def __init__(
        self,
        maxSessions: int,
        maxCached: int,
        onDropped: Callable[[HeldLogin], object],
        *,
        maxSessionsPerAvatar: int | None = None,
        maxCachedPerAvatar: int | None = None,
    ) -> None:
        """
        @param maxSessions: sessions held at most, in all.
        @param maxCached: cached credentials held at most, in all.
        @param maxSessionsPerAvatar: sessions of one avatar held at most
            (by default, C{maxSessions}).
        @param maxCachedPerAvatar: cached credentials of one avatar held at
            most (by default, C{maxCached}).
        """
        self._sessions: _Table = FairShares(
            maxSessions, maxSessionsPerAvatar or maxSessions
        )
        self._cached: _Table = FairShares(maxCached, maxCachedPerAvatar or maxCached)
        self._byId: dict[str, tuple[_Table, bytes]] = {}
        self._key = secrets.token_bytes(SECRET_BYTES)
        self.onDropped = onDropped

    def __len__(self) -> int:
        return len(self._byId)

    def keycardIds(self) -> list[str]:
        return list(self._byId)

    def holds(self, keycardId: str) -> bool:
        """
        Whether a session or cached credentials of this keycard are held.
        """
        return keycardId in self._byId

    @staticmethod
    def sessionKey(cookie: str) -> bytes:
        return hashlib.sha256(cookie.encode("utf-8")).digest()

    def credentialKey(self, *parts: str) -> bytes:
        """
        The key of cached credentials: an HMAC of C{parts}, which must
        include everything the keycard depends on (the client address).
        """
        data = b"\0".join(p.encode("utf-8", "surrogatepass") for p in parts)
        return hmac.digest(self._key, data, "sha256")

    def newSession(
        self,
        keycardId: str,
        avatarId: str,
        expires: float,
        duration: float | None = None,
    ) -> str:
        """
        Hold a session for a keycard; with a C{duration}, its requests
        renew it.

        @return: the cookie value that names it.
        """
        cookie = secrets.token_urlsafe(SECRET_BYTES)
        login = HeldLogin(
            keycardId,
            avatarId,
            expires,
            secrets.token_urlsafe(SECRET_BYTES),
            duration=duration,
        )
        self._put(self._sessions, self.sessionKey(cookie), login)
        return cookie

    def session(self, cookie: str) -> HeldLogin | None:
        return self._use(self._sessions, self.sessionKey(cookie))

    def cache(self, key: bytes, login: HeldLogin) -> None:
        self._put(self._cached, key, login)

    def cached(self, key: bytes) -> HeldLogin | None:
        return self._use(self._cached, key)

    def sessionsOf(self, avatarId: str) -> int:
        """
        The number of sessions of C{avatarId} held.
        """
        return self._sessions.owned(avatarId)

    @staticmethod
    def _use(table: _Table, key: bytes) -> HeldLogin | None:
        table.used(key)
        return table.get(key)

    def _put(self, table: _Table, key: bytes, login: HeldLogin) -> None:
        for _, pushed in table.put(key, login.avatarId, login):
            self._byId.pop(pushed.keycardId, None)
            self.onDropped(pushed)
        self._byId[login.keycardId] = (table, key)

    def drop(self, keycardIds: Iterable[str]) -> list[HeldLogin]:
        """
        Forget the logins of these keycards (ended by the bouncer, or by a
        logout).

        @return: the logins forgotten.
        """
        dropped = []
        for keycardId in keycardIds:
            found = self._byId.pop(keycardId, None)
            if found is not None:
                table, key = found
                login = table.pop(key)
                if login is not None:
                    dropped.append(login)
        return dropped


@implementer(IRequester)
class KeycardGuard:
    """
    Checks HTTP requests with a bouncer, as L{KeycardRoot} checks PB logins:
    it sets each keycard's C{address} (the HTTP peer, or the client a
    trusted proxy names) and C{requesterName}, and drops what it holds when
    the bouncer expires or revokes the keycard, so the next request gets a
    401.  Resources use it through L{GuardedResource}, L{protect} (Klein),
    L{LoginPage} and L{LogoutPage}.
    """

    log = Logger()

    def __init__(
        self,
        bouncer: IBouncer,
        *,
        clock: IReactorTime,
        requesterName: str = "web",
        options: GuardOptions = GuardOptions(),  # noqa: B008 - frozen
    ) -> None:
        """
        @param bouncer: an in-process L{Bouncer} or a L{RemoteBouncer}; it
            must take token keycards for Bearer, password keycards for Basic
            and the login form, SCRAM keycards for SCRAM.
        @param clock: the time held logins are checked against.
        @param requesterName: this requester's name, set in every keycard.
        """
        self.bouncer = bouncer
        self.clock = clock
        self.requesterName = requesterName
        self.options = options
        self.held = HeldLogins(
            options.maxSessions,
            options.maxCached,
            self._pushed,
            maxSessionsPerAvatar=options.maxSessionsPerAvatar,
            maxCachedPerAvatar=options.maxCachedPerAvatar,
        )
        self.answers = Answers(options)
        self.unauthorized = self.answers.unauthorized
        self.link = BouncerLink(bouncer, requesterName, options, self.answers)
        bouncer.registerRequester(requesterName, self)

    # IRequester

    def expireKeycardIds(self, keycardIds: Sequence[str]) -> None:
        """
        The bouncer ended these keycards: forget their sessions and cached
        credentials.
        """
        self.held.drop(keycardIds)

    def keycardIds(self) -> list[str]:
        return [*self.held.keycardIds(), *self.link.inFlight]

    def holds(self, keycardId: str) -> bool:
        """
        Whether the guard still holds a login of this keycard: one the
        bouncer has not expired or revoked, nor a full table pushed out.
        An application that keeps its own sessions of the guard's logins
        (Buildbot's, see L{twisted_keycard.buildbot.KeycardWebAuth}) ends
        one whose keycard the guard no longer holds.
        """
        return self.held.holds(keycardId)

    # Checking requests

    def authenticate(self, request: IRequest) -> Deferred[WebLogin]:
        """
        Check the credentials of C{request}: its C{Authorization} header if
        it has one, else its session cookie.  A SCRAM login's
        C{Authentication-Info} header is set on the request, and its keycard
        is removed when the request ends.

        @return: a L{Deferred} firing with the L{WebLogin}, or failing with
            a L{WebRefusal} to render instead of the resource.
        """
        return Deferred.fromCoroutine(self._authenticate(request, cached=True))

    def login(self, request: IRequest) -> Deferred[WebLogin]:
        """
        Log in afresh with the request's Basic or SCRAM credentials, with
        no held login used or kept: for an endpoint that hands out tokens.
        The keycard is removed from the bouncer when the request ends (its
        token stays valid).
        """
        return Deferred.fromCoroutine(self._authenticate(request, cached=False))

    async def _authenticate(self, request: IRequest, cached: bool) -> WebLogin:
        login = await self._check(request, cached)
        connectionAuthenticated(request)
        return login

    async def _check(self, request: IRequest, cached: bool) -> WebLogin:
        header = request.getHeader(b"authorization")
        if header is None:
            if cached:
                return self._session(request)
            raise self.unauthorized(request)
        try:
            credentials = parseAuthorization(header)
        except ProtocolError:
            raise self.unauthorized(request) from None
        if credentials.isScheme(BEARER) and cached and BEARER in self.options.schemes:
            return await self._bearer(request, credentials)
        if credentials.isScheme(BASIC) and BASIC in self.options.schemes:
            return await self._basic(request, credentials, cached)
        if credentials.isScheme(SCRAM) and SCRAM in self.options.schemes:
            return await self._scram(request, credentials)
        raise self.unauthorized(request)

    def session(self, request: IRequest) -> WebLogin | None:
        """
        The cookie session of C{request}, if it has a current one, with no
        CSRF check: for pages that only show it (the login page shows a
        logged-in browser its way out).
        """
        cookie = request.getCookie(self.options.cookieName.encode("ascii"))
        if cookie is None:
            return None
        held = self.held.session(cookie.decode("ascii", "replace"))
        if held is None or not self._current(held):
            return None
        self._renewSoon(held)
        return WebLogin(
            held.avatarId,
            held.keycardId,
            SESSION,
            held.expires,
            csrfToken=held.csrfToken,
        )

    def _session(self, request: IRequest) -> WebLogin:
        login = self.session(request)
        if login is None:
            raise self.unauthorized(request)
        if changesState(request):
            secure = self.options.proxies.isSecure(request)
            submitted = submittedToken(request, CSRF_FIELD, CSRF_HEADER)
            if fromAnotherSite(request, secure) or not tokensMatch(
                login.csrfToken, submitted
            ):
                raise forbidden("missing or wrong CSRF token")
        return login

    def _current(self, held: HeldLogin) -> bool:
        """
        Whether a held login is still within its expiry; one past it is
        dropped and its keycard removed.
        """
        if self.clock.seconds() < held.expires:
            return True
        self.held.drop([held.keycardId])
        self.link.remove(held.keycardId)
        return False

    def _renewSoon(self, held: HeldLogin) -> None:
        """
        A request used C{held}: in the second half of its keycard's
        duration, ask the bouncer to renew the keycard (one request at a
        time; the request does not wait).  A renewal the bouncer refuses
        (past its C{maxLifetime}) or cannot make (unreachable) leaves the
        login to end at its expiry.
        """
        duration = held.duration
        if not self.options.renew or duration is None or held.renewing:
            return
        now = self.clock.seconds()
        if held.expires - now > duration / 2 or now < held.retryAt:
            return
        held.renewing = True

        def renewed(count: int) -> None:
            held.renewing = False
            if count and self.held.holds(held.keycardId):
                held.expires = self.clock.seconds() + duration

        def failed(failure: Failure) -> None:
            held.renewing = False
            # One line, and one try, per tenth of the duration at most.
            held.retryAt = self.clock.seconds() + duration / 10
            self.log.info(
                "could not renew keycard {keycardId}: {error}",
                keycardId=held.keycardId,
                error=printable(str(failure.value)),
            )

        self.bouncer.keepAlive(self.requesterName, [held.keycardId]).addCallbacks(
            renewed, failed
        )

    async def _bearer(self, request: IRequest, credentials: Credentials) -> WebLogin:
        token = credentials.token68
        if token is None:
            raise self.unauthorized(request, bearerError=True)
        address = self.options.proxies.clientAddress(request)
        key = self.held.credentialKey(BEARER, token, address or "")
        held = self.held.cached(key)
        if held is None or not self._current(held):
            try:
                keycard = keycardFrom(TokenKeycard, {"presented": token})
                tokenId = keycardIdOf(token)
            except (ProtocolError, KeycardError):
                raise self.unauthorized(request, bearerError=True) from None
            issued = await self.link.ask(request, keycard, bearerError=True)
            assert issued.id is not None and issued.avatarId is not None
            expires = _earliest(issued.expires, tokenExpires(token))
            held = HeldLogin(issued.id, issued.avatarId, expires, tokenId=tokenId)
            self.held.cache(key, held)
        return WebLogin(
            held.avatarId, held.keycardId, BEARER, held.expires, tokenId=held.tokenId
        )

    async def _basic(
        self, request: IRequest, credentials: Credentials, cached: bool
    ) -> WebLogin:
        proxies = self.options.proxies
        if not proxies.isSecure(request):
            raise self.unauthorized(request, body=NEEDS_TLS)
        if changesState(request) and fromAnotherSite(request, True):
            raise forbidden("cross-site request refused")
        try:
            username, password = decodeBasic(credentials.token68)
            keycard = passwordKeycard(username, password)
        except ProtocolError:
            raise self.unauthorized(request) from None
        address = proxies.clientAddress(request)
        key = self.held.credentialKey(BASIC, username, password, address or "")
        held = self.held.cached(key) if cached else None
        if held is not None and self._current(held):
            self._renewSoon(held)
            return WebLogin(held.avatarId, held.keycardId, BASIC, held.expires)
        issued = await self.link.ask(request, keycard)
        assert issued.id is not None and issued.avatarId is not None
        if not cached:
            return self.link.oneShot(request, issued, BASIC)
        expires = _earliest(issued.expires, None)
        self.held.cache(
            key,
            HeldLogin(issued.id, issued.avatarId, expires, duration=issued.duration),
        )
        return WebLogin(issued.avatarId, issued.id, BASIC, expires, token=issued.token)

    async def _scram(self, request: IRequest, credentials: Credentials) -> WebLogin:
        try:
            keycard = scramKeycard(credentials.params)
        except ProtocolError:
            raise self.unauthorized(request) from None
        result = await self.link.ask(request, keycard)
        if not isinstance(result, SCRAMKeycard) or result.id is None:
            raise self.unauthorized(request)
        if result.state is KeycardState.REQUESTING and result.serverFirst is not None:
            data = encodeData(result.serverFirst)
            raise unauthorized([challenge(SCRAM, [("sid", result.id), ("data", data)])])
        if result.serverFinal is None:
            raise self.unauthorized(request)
        data = encodeData(result.serverFinal)
        request.setHeader(
            b"authentication-info", challenge("", [("sid", result.id), ("data", data)])
        )
        return self.link.oneShot(request, result, SCRAM)

    def checkPassword(
        self, request: IRequest, username: str, password: str
    ) -> Deferred[Keycard]:
        """
        Check a user name and password a form sent (over TLS only).

        @return: a L{Deferred} firing with the issued keycard, or failing
            with a L{WebRefusal} (401, 429, 503).
        """

        async def check() -> Keycard:
            try:
                keycard = passwordKeycard(username, password)
            except ProtocolError:
                raise self.unauthorized(request) from None
            issued = await self.link.ask(request, keycard)
            connectionAuthenticated(request)
            return issued

        return Deferred.fromCoroutine(check())

    # Ending logins

    def newSession(self, issued: Keycard) -> tuple[str, HeldLogin]:
        """
        Hold a cookie session for a keycard the login form was issued.

        @return: the cookie value, and the session.
        """
        assert issued.id is not None and issued.avatarId is not None
        expires = _earliest(issued.expires, None)
        cookie = self.held.newSession(
            issued.id, issued.avatarId, expires, issued.duration
        )
        session = self.held.session(cookie)
        assert session is not None
        return cookie, session

    async def logout(self, login: WebLogin) -> None:
        """
        End a login: forget its session or cached credentials and remove
        its keycard; for a Bearer login, also revoke the token when the
        bouncer can (an in-process L{Bouncer}), so that it is refused from
        now on.
        """
        self.held.drop([login.keycardId])
        revoke: Any = getattr(self.bouncer, "revokeKeycardIds", None)
        if login.tokenId is not None and revoke is not None:
            await revoke([login.tokenId], "logout")
        if not login.oneShot:
            await self.bouncer.removeKeycardId(login.keycardId)

    def _pushed(self, login: HeldLogin) -> None:
        self.link.remove(login.keycardId)


def _earliest(issued: float | None, stated: float | None) -> float:
    """
    The earlier of two expiries, either of which may be unknown.
    """
    known = [e for e in (issued, stated) if e is not None]
    return min(known) if known else float("inf")


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
