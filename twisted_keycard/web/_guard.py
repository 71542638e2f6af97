"""
The web guard: a requester that checks each HTTP request's credentials
with a bouncer (Bearer tokens, Basic over TLS, SCRAM over HTTP, cookie
sessions), and holds the keycards it was issued until the bouncer ends them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from zope.interface import implementer

from twisted_keycard.bouncer._interfaces import IBouncer, IRequester
from twisted_keycard.error import KeycardError, ProtocolError
from twisted_keycard.keycard._keycard import Keycard, KeycardState
from twisted_keycard.scram._keycard import SCRAMKeycard
from twisted_keycard.tokencard import TokenKeycard
from twisted_keycard.tokens._format import keycardIdOf
from twisted_keycard.web._challenges import Answers
from twisted_keycard.web._csrf import (
    changesState,
    fromAnotherSite,
    submittedToken,
    tokensMatch,
)
from twisted_keycard.web._headers import (
    BASIC,
    BEARER,
    SCRAM,
    Credentials,
    challenge,
    parseAuthorization,
)
from twisted_keycard.web._link import BouncerLink
from twisted_keycard.web._logins import HeldLogin, HeldLogins
from twisted_keycard.web._options import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION,
    GuardOptions,
    WebLogin,
)
from twisted_keycard.web._refusals import (
    NEEDS_TLS,
    forbidden,
    unauthorized,
)
from twisted_keycard.web._schemes import (
    decodeBasic,
    encodeData,
    keycardFrom,
    passwordKeycard,
    scramKeycard,
    tokenExpires,
)


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
        self.held = HeldLogins(options.maxSessions, options.maxCached, self._pushed)
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
        header = request.getHeader(b"authorization")
        if header is None:
            cookie = request.getCookie(self.options.cookieName.encode("ascii"))
            if cached and cookie is not None:
                return self._session(request, cookie)
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

    def _session(self, request: IRequest, cookie: bytes) -> WebLogin:
        held = self.held.session(cookie.decode("ascii", "replace"))
        if held is None or not self._current(held):
            raise self.unauthorized(request)
        if changesState(request):
            secure = self.options.proxies.isSecure(request)
            submitted = submittedToken(request, CSRF_FIELD, CSRF_HEADER)
            if fromAnotherSite(request, secure) or not tokensMatch(
                held.csrfToken, submitted
            ):
                raise forbidden("missing or wrong CSRF token")
        return WebLogin(
            held.avatarId,
            held.keycardId,
            SESSION,
            held.expires,
            csrfToken=held.csrfToken,
        )

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
            return WebLogin(held.avatarId, held.keycardId, BASIC, held.expires)
        issued = await self.link.ask(request, keycard)
        assert issued.id is not None and issued.avatarId is not None
        if not cached:
            return self.link.oneShot(request, issued, BASIC)
        expires = _earliest(issued.expires, None)
        self.held.cache(key, HeldLogin(issued.id, issued.avatarId, expires))
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
            return await self.link.ask(request, keycard)

        return Deferred.fromCoroutine(check())

    # Ending logins

    def newSession(self, issued: Keycard) -> tuple[str, HeldLogin]:
        """
        Hold a cookie session for a keycard the login form was issued.

        @return: the cookie value, and the session.
        """
        assert issued.id is not None and issued.avatarId is not None
        expires = _earliest(issued.expires, None)
        cookie = self.held.newSession(issued.id, issued.avatarId, expires)
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
