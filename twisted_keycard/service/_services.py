"""
The bouncer service's parts as services: a bouncer and the store it owns,
its HTTP face (C{--http}) and its metrics (C{--metrics}).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from twisted.application.service import MultiService
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred

from twisted_keycard.bouncer import Bouncer, IBouncer, TokenPolicy
from twisted_keycard.metrics import PrometheusMetrics, metricsSite
from twisted_keycard.passwords import PasswordKeycard
from twisted_keycard.scram import SCRAMPasswordChecker, SCRAMVerifiers
from twisted_keycard.service._datadir import DataDir
from twisted_keycard.service._startup import (
    EndpointError,
    Listener,
    StartupError,
    giveMockSecret,
    serverEndpoint,
    sqlitePath,
    storedMockSecret,
    storePassword,
)
from twisted_keycard.store.redis import (
    RedisStore,
    isRedisURL,
    parseRedisURL,
    startupCheck,
)
from twisted_keycard.store.sqlite import SQLiteStore
from twisted_keycard.web import (
    GuardOptions,
    KeycardGuard,
    KeycardSite,
    ProxyTrust,
    httpFace,
)


class BouncerService(MultiService):
    """
    A L{Bouncer} and its store (an L{SQLiteStore}, or a C{RedisStore}),
    which it alone closes: starting the service starts the bouncer;
    stopping it stops the bouncer, then closes the store (and stops its
    thread, or its connections).  Set it as the child of an
    application (or start and stop it yourself) and hand C{bouncer} to a
    L{twisted_keycard.KeycardRoot}.

    @ivar bouncer: the bouncer.
    @ivar store: its store.
    """

    def __init__(self, bouncer: Bouncer, store: SQLiteStore | RedisStore) -> None:
        super().__init__()
        self.bouncer = bouncer
        self.store: Any = store
        bouncer.setServiceParent(self)

    @classmethod
    def fromDataDir(
        cls,
        path: str | Path,
        reactor: Any,
        checkers: Iterable[ICredentialsChecker] | None = None,
        **options: Any,
    ) -> BouncerService:
        """
        The bouncer of a data directory made by C{keycard init}: its store
        (C{keycard.db}, shared with the C{keycard} command and any bouncer
        service on it) and, unless C{checkers} are given, its users' SCRAM
        verifiers (C{users.scram}, read again when it changes).

        @param reactor: the reactor: the bouncer's clock, and where the
            store delivers its results.
        @param options: L{Bouncer}'s keyword arguments (C{name},
            C{duration}, C{quota}, ...); C{tokens} is a default
            L{TokenPolicy} unless given, as in the bouncer service.
        @raise twisted_keycard.service.NoDataDir: if C{path} is not a data
            directory.
        @raise sqlite3.Error: if its SQLite store cannot be opened.
        @raise OSError: if its Redis store cannot be reached (see
            L{twisted_keycard.store.redis}).
        @raise twisted_keycard.service.KeyFileError: if its Redis store's
            key-encryption key file (C{store.kek}) is missing or holds no
            key.
        @raise twisted_keycard.store.redis.WrongKeyEncryptionKey: if that
            key does not open the store's secrets.
        """
        dataDir = DataDir.open(path)
        if checkers is None:
            checkers = [
                SCRAMVerifiers.fromFile(dataDir.users, clock=reactor),
            ]
        options.setdefault("tokens", TokenPolicy())
        checkers = list(checkers)
        store: Any
        if isRedisURL(dataDir.store):
            # A data directory made with keycard init --store redis://...
            url = parseRedisURL(dataDir.store)
            password = storePassword(dataDir.storePasswordFile)
            kek = dataDir.keyEncryptionKey()
            secret = startupCheck(url, password, kek).mockSecret
            store = RedisStore(url, reactor, password=password, keyEncryptionKey=kek)
        else:
            path = sqlitePath(dataDir.store)
            secret = storedMockSecret(path)
            store = SQLiteStore(path, reactor)
        # Mock challenges the same as the bouncer service's on this store.
        giveMockSecret(checkers, secret)
        return cls(Bouncer(checkers, store, clock=reactor, **options), store)

    def stopService(self) -> Deferred[None]:
        stopped: Deferred[Any] = super().stopService()
        return stopped.addBoth(lambda _: self.store.close())


def passwordCheckers(checkers: list[ICredentialsChecker]) -> list[ICredentialsChecker]:
    """
    What lets the HTTP face check plain passwords (Basic, the login form):
    nothing if a checker already takes password keycards (htpasswd:),
    else the first SCRAM verifiers file, checking passwords itself.
    """
    if any(PasswordKeycard in getattr(c, "keycardClasses", ()) for c in checkers):
        return []
    for checker in checkers:
        if isinstance(checker, SCRAMVerifiers):
            return [SCRAMPasswordChecker(checker)]
    return []


def serveHTTP(
    reactor: Any,
    endpoint: str,
    bouncer: IBouncer,
    requesterName: str,
    proxies: ProxyTrust,
    parent: MultiService,
    bouncerName: str,
) -> None:
    """
    Serve the HTTP face on C{endpoint}, as requester C{requesterName}.

    @raise StartupError: if C{endpoint} names no server endpoint.
    """
    try:
        listening = serverEndpoint(reactor, endpoint, "--http")
    except EndpointError as e:
        raise StartupError(str(e)) from None
    guard = KeycardGuard(
        bouncer,
        clock=reactor,
        requesterName=requesterName,
        options=GuardOptions(loginPath="/login", proxies=proxies),
    )
    site = KeycardSite(httpFace(guard))
    Listener(
        listening, site, endpoint, bouncerName, "HTTP face of bouncer"
    ).setServiceParent(parent)


def serveMetrics(
    reactor: Any, endpoint: str, store: Any, parent: MultiService, bouncerName: str
) -> tuple[PrometheusMetrics, Any]:
    """
    Metrics in a registry of their own (with the process's), served on
    C{endpoint}, and the store with its calls timed.

    @raise StartupError: if C{endpoint} is not a server endpoint; twistd
        then prints one line.
    """
    try:
        listening = serverEndpoint(reactor, endpoint, "--metrics")
    except EndpointError as e:
        raise StartupError(str(e)) from None
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    metrics = PrometheusMetrics(registry)
    site = metricsSite(registry)
    Listener(
        listening, site, endpoint, bouncerName, "metrics of bouncer"
    ).setServiceParent(parent)
    return metrics, metrics.timed(store)
