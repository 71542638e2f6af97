"""
Buildbot's web UI and REST API on keycards: an auth for
C{c["www"]["auth"]} that checks passwords (an htpasswd file in any format
libpass reads, or SCRAM-SHA-256 verifiers) and keycard tokens through a
bouncer of the data directory, with its throttle and its revocations.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from buildbot.www.auth import (
    AuthBase,
    LoginResource,
    LogoutResource,
    UserInfoProviderBase,
)
from buildbot.www.resource import Redirect
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.util import DeferredResource
from zope.interface import implementer

from twisted_keycard._printable import printable
from twisted_keycard.bouncer import Throttle
from twisted_keycard.passwords import PasswordFile
from twisted_keycard.scram import SCRAMPasswordChecker, SCRAMVerifiers
from twisted_keycard.service import BouncerService, DataDir
from twisted_keycard.web import (
    GuardOptions,
    KeycardGuard,
    TokenPage,
    WebLogin,
    WebRefusal,
)

#: The requester name of the web UI's guard, for C{keycard revoke
#: --requester}.
WWW_REQUESTER = "buildbot-www"

#: The field of Buildbot's session (its C{user_info}) naming the keycard a
#: browser logged in with: the session ends when the guard drops it.
KEYCARD_FIELD = "keycardId"

#: The children of Buildbot's web root whose requests are checked: the
#: REST API, the UI's page and its event streams.
CHECKED = (b"api", b"", b"sse", b"ws")


class KeycardWebAuth(AuthBase):
    """
    C{c["www"]["auth"]} for Buildbot's web UI and REST API::

        from twisted_keycard.buildbot import KeycardWebAuth
        c["www"]["auth"] = KeycardWebAuth("keycard-data", htpasswd="web.htpasswd")

    Every request to the REST API (C{/api}), the UI's page and its event
    streams may carry C{Authorization: Bearer <token>} (a keycard token),
    C{Basic} (over HTTPS only) or C{SCRAM-SHA-256} (RFC 7804): it is
    checked by a bouncer of the data directory (its store, its signing
    keys, its revocations, read again within a second), under that
    bouncer's throttle, and counts as that user for Buildbot's C{authz}
    for that request alone.  C{/auth/login} checks the same and starts a
    Buildbot session (a browser's password prompt answers its 401); the
    session ends when its keycard does (its C{duration}, or C{keycard
    revoke}).  C{POST /auth/token} with a password answers a token (see
    L{TokenPage}).

    @ivar guard: the L{KeycardGuard} that checks requests, once the master
        has configured its web server.
    @ivar bouncerService: its bouncer and store, a child service of the
        master, likewise.
    """

    log = Logger()

    def __init__(
        self,
        dataDir: str = "keycard-data",
        *,
        htpasswd: str | None = None,
        scramUsers: str | None = None,
        throttle: Throttle | None = Throttle(),  # noqa: B008 - frozen
        duration: float = 8 * 3600.0,
        guardOptions: GuardOptions = GuardOptions(realm="buildbot"),  # noqa: B008
        requesterName: str = WWW_REQUESTER,
        **kwargs: Any,
    ) -> None:
        """
        @param dataDir: a data directory made by C{keycard init} (relative
            to the master's directory), shared with the master's PB ports
            and the C{keycard} command.
        @param htpasswd: an htpasswd file (bcrypt, argon2, SHA-crypt, apr1,
            ...; read again when it changes) to check passwords against,
            relative to the master's directory.
        @param scramUsers: a SCRAM-SHA-256 verifiers file to check them
            against instead; the data directory's C{users.scram} (C{keycard
            user add}) when neither is given.
        @param throttle: limits on failed logins, per account and per
            client address; C{None} for none.
        @param duration: seconds a login's keycard, and so a browser's
            session, lasts.
        @param guardOptions: how the guard meets clients (its realm,
            schemes, the reverse proxies it trusts, its limits).
        @param requesterName: the guard's requester name.
        @param kwargs: L{AuthBase}'s (C{userInfoProvider}).
        @raise ValueError: if both C{htpasswd} and C{scramUsers} are given,
            or for a C{duration} that is not a positive number.
        """
        super().__init__(**kwargs)
        #: Tells more of a user (an e-mail address, groups) for C{authz}.
        self.userInfoProvider: Any = kwargs.get("userInfoProvider")
        if self.userInfoProvider is None:
            self.userInfoProvider = UserInfoProviderBase()
        if htpasswd is not None and scramUsers is not None:
            raise ValueError(
                "KeycardWebAuth checks passwords against one file: give"
                " htpasswd= or scramUsers=, not both"
            )
        if not duration > 0:
            raise ValueError("duration must be a positive number of seconds")
        self.dataDir = dataDir
        self.htpasswd = htpasswd
        self.scramUsers = scramUsers
        self.throttle = throttle
        self.duration = duration
        self.guardOptions = guardOptions
        self.requesterName = requesterName
        self.guard: KeycardGuard | None = None
        self.bouncerService: BouncerService | None = None

    def getConfigDict(self) -> dict[str, str]:
        """
        What the UI is told of this auth: its name only.
        """
        return {"name": type(self).__name__}

    def reconfigAuth(self, master: Any, new_config: Any) -> None:
        """
        Check the requests of the web root's API, page and event streams
        from now on.  The auth of an earlier configuration with the same
        arguments hands over its bouncer and guard, so that the browsers'
        sessions go on; one with other arguments stops its bouncer, and
        this one starts its own.
        """
        super().reconfigAuth(master, new_config)
        www = master.www
        root = www.apps.get(www.base_plugin_name).resource
        earlier = {
            child.auth
            for child in root.children.values()
            if isinstance(child, CheckedResource) and child.auth is not self
        }
        for old in earlier:
            if self.guard is None and old.settings() == self.settings():
                self.guard, self.bouncerService = old.guard, old.bouncerService
                old.guard = old.bouncerService = None
            old.stop()
        if self.guard is None:
            self._start(master)
        for name in CHECKED:
            child = root.children.get(name)
            if isinstance(child, CheckedResource):
                child.auth = self
            elif child is not None:
                root.putChild(name, CheckedResource(child, self))
        login = root.children.get(b"auth")
        if login is not None:
            login.putChild(b"token", TokenPage(self._guard()))

    def settings(self) -> tuple[object, ...]:
        """
        What this auth was made with, but its user info provider: two auths
        of equal settings can share a bouncer and a guard.
        """
        return (
            self.dataDir,
            self.htpasswd,
            self.scramUsers,
            self.throttle,
            self.duration,
            self.guardOptions,
            self.requesterName,
        )

    def _start(self, master: Any) -> None:
        base = Path(master.basedir or ".")
        reactor = master.reactor
        dataDir = base / self.dataDir
        checkers: list[ICredentialsChecker]
        if self.htpasswd is not None:
            checkers = [PasswordFile(base / self.htpasswd, clock=reactor)]
            source = f"htpasswd file {self.htpasswd}"
        else:
            path = (
                base / self.scramUsers
                if self.scramUsers is not None
                else DataDir.open(dataDir).users
            )
            verifiers = SCRAMVerifiers.fromFile(path, clock=reactor)
            checkers = [verifiers, SCRAMPasswordChecker(verifiers)]
            source = f"SCRAM verifiers {path}"
        service = BouncerService.fromDataDir(
            dataDir,
            reactor,
            checkers,
            name=f"{self.requesterName}-bouncer",
            throttle=self.throttle,
            duration=self.duration,
        )
        self.guard = KeycardGuard(
            service.bouncer,
            clock=reactor,
            requesterName=self.requesterName,
            options=self.guardOptions,
        )
        self.bouncerService = service
        service.setServiceParent(master)
        self.log.info(
            "the web UI takes keycard tokens and passwords ({source}; data"
            " directory {dataDir})",
            source=source,
            dataDir=str(dataDir),
        )

    def stop(self) -> None:
        """
        Stop this auth's bouncer, if it still has one: a new
        configuration's auth replaced it.
        """
        if self.bouncerService is not None:
            self.bouncerService.disownServiceParent()
            self.bouncerService = None

    def _guard(self) -> KeycardGuard:
        if self.guard is None:
            raise RuntimeError("KeycardWebAuth is not configured by a master yet")
        return self.guard

    def getLoginResource(self) -> LoginResource:
        """
        C{/auth/login}: a Buildbot session for the request's login.
        """
        return _Login(self.master, self)

    def getLogoutResource(self) -> LogoutResource:
        """
        C{/auth/logout}: Buildbot's, and the session's keycard removed.
        """
        return _Logout(self.master, self)

    async def check(self, request: IRequest) -> None:
        """
        Check C{request}: with an C{Authorization} header, log it in as
        that user for this request alone (a refusal is a L{WebRefusal});
        without one, end its Buildbot session if the keycard it logged in
        with is gone (expired, revoked, logged out).
        """
        guard = self._guard()
        session: Any = request.getSession()
        if request.getHeader(b"authorization") is not None:
            login = await guard.authenticate(request)
            session.user_info = await self.userInfo(login)
            return
        keycardId = session.user_info.get(KEYCARD_FIELD)
        if keycardId is not None and not guard.holds(keycardId):
            session.expire()
            session.updateSession(request)

    async def userInfo(self, login: WebLogin) -> dict[str, Any]:
        """
        Buildbot's C{user_info} for a login: its user name, what the
        C{userInfoProvider} tells of it, and its keycard id.
        """
        info: dict[str, Any] = {"username": login.avatarId}
        more: Mapping[str, Any] = await self.userInfoProvider.getUserInfo(
            login.avatarId
        )
        info.update(more)
        info[KEYCARD_FIELD] = login.keycardId
        return info


@implementer(IResource)
class CheckedResource:
    """
    One of Buildbot's web resources, served once L{KeycardWebAuth.check}
    passes; its refusal (401, 429, 503) is rendered instead.  It takes no
    path segment.

    @ivar auth: the auth that checks; a reconfiguration replaces it.
    """

    isLeaf = False

    def __init__(self, resource: IResource, auth: KeycardWebAuth) -> None:
        self.resource = resource
        self.auth = auth

    def render(self, request: IRequest) -> Any:
        """
        Render the wrapped resource once the request is checked.
        """
        return self._checked(request).render(request)

    def getChildWithDefault(self, path: bytes, request: IRequest) -> IResource:
        """
        The wrapped resource's child for the rest of the path, once the
        request is checked.
        """
        # Transparent: the wrapped resource gets the segment.
        postpath: Any = request.postpath
        prepath: Any = request.prepath
        postpath.insert(0, prepath.pop())
        return self._checked(request)

    def putChild(self, path: bytes, child: IResource) -> None:
        """
        Give the wrapped resource a child.
        """
        self.resource.putChild(path, child)

    def _checked(self, request: IRequest) -> IResource:
        async def check() -> IResource:
            try:
                await self.auth.check(request)
            except WebRefusal as refusal:
                return refusal.resource()
            return self.resource

        return DeferredResource(Deferred.fromCoroutine(check()))


class _Login(LoginResource):
    """
    C{/auth/login}: a Buildbot session for the user the request's
    C{Authorization} logs in (a browser sends it after the 401's password
    prompt), then back to the UI.
    """

    def __init__(self, master: Any, auth: KeycardWebAuth) -> None:
        super().__init__(master)
        self.auth = auth

    def renderLogin(self, request: Any) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._login(request))

    async def _login(self, request: Any) -> bytes:
        try:
            login = await self.auth._guard().authenticate(request)
        except WebRefusal as refusal:
            return refusal.render(request)
        session = request.getSession()
        session.user_info = await self.auth.userInfo(login)
        session.updateSession(request)
        self.auth.log.info(
            "web UI login of {avatarId} ({scheme})",
            avatarId=printable(login.avatarId),
            scheme=login.scheme,
        )
        target = request.args.get(b"redirect", [b"/"])[0].decode("utf-8", "replace")
        raise Redirect(self.master.config.buildbotURL + "#" + target)


class _Logout(LogoutResource):
    """
    C{/auth/logout}: Buildbot's (the session cookie is cleared), and the
    session's keycard is removed, so that a copy of the cookie is anonymous
    from now on too.
    """

    def __init__(self, master: Any, auth: KeycardWebAuth) -> None:
        super().__init__(master)
        self.auth = auth

    def render_GET(self, request: Any) -> bytes:
        info = request.getSession().user_info
        keycardId, avatarId = info.get(KEYCARD_FIELD), info.get("username")
        guard = self.auth.guard
        if guard is not None and keycardId is not None and guard.holds(keycardId):
            login = WebLogin(str(avatarId), keycardId, "session")
            Deferred.fromCoroutine(guard.logout(login)).addErrback(
                lambda failure: self.auth.log.failure(
                    "removing a logged out keycard failed", failure
                )
            )
        body: bytes = super().render_GET(request)
        return body
