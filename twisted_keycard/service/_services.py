"""
The bouncer service's parts as services: a bouncer and the store it owns,
its HTTP face (C{--http}) and its metrics (C{--metrics}).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from twisted.application.service import MultiService
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from twisted_keycard.bouncer import Bouncer, IBouncer, TokenPolicy
from twisted_keycard.metrics import PrometheusMetrics, metricsSite
from twisted_keycard.passwords import IHashPool, PasswordKeycard
from twisted_keycard.pb import ConnectionBudget
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
    SiteLimits,
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


def passwordCheckers(
    checkers: list[ICredentialsChecker], hashes: IHashPool
) -> list[ICredentialsChecker]:
    """
    What lets the HTTP face check plain passwords (Basic, the login form):
    nothing if a checker already takes password keycards (htpasswd:),
    else the first SCRAM verifiers file, checking passwords itself, its
    PBKDF2 in the service's pool of slow hashes, C{hashes}.
    """
    if any(PasswordKeycard in getattr(c, "keycardClasses", ()) for c in checkers):
        return []
    for checker in checkers:
        if isinstance(checker, SCRAMVerifiers):
            return [SCRAMPasswordChecker(checker, hashPool=hashes)]
    return []


log = Logger()


def _plainTCP(description: str) -> bool:
    """
    Whether a server endpoint string listens on TCP without TLS.
    """
    return description.startswith(("tcp:", "tcp6:")) or description.isdigit()


def _loopbackOnly(description: str) -> bool:
    """
    Whether a TCP server endpoint string binds only a loopback address
    (its C{interface=}; none binds every interface).
    """
    found = re.search(r"(?:^|:)interface=((?:\\.|[^:])*)", description)
    if found is None:
        return False
    interface = re.sub(r"\\(.)", r"\1", found.group(1))
    if interface == "localhost":
        return True
    try:
        return ipaddress.ip_address(interface).is_loopback
    except ValueError:
        return False


def warnExposedFaces(
    http: str | None, metrics: str | None, proxies: ProxyTrust
) -> None:
    """
    Log a warning for a face that serves in clear what an eavesdropper
    could use: an HTTP face on plain TCP with no TLS-terminating proxy
    trusted (Bearer tokens and session cookies cross it as they are, and
    are good until they expire), and metrics on plain TCP bound to more
    than loopback (anyone who reaches the port reads them).
    """
    if http is not None and _plainTCP(http) and not proxies.networks:
        log.warn(
            "--http {endpoint} is plain HTTP: Bearer tokens and session cookies"
            " cross it in clear, and whoever sees one can use it until it"
            " expires; serve it with ssl:, or behind a TLS proxy"
            " (--http-trust-proxy)",
            endpoint=http,
            event="bouncer.warning",
        )
    if metrics is not None and _plainTCP(metrics) and not _loopbackOnly(metrics):
        log.warn(
            "--metrics {endpoint} is plain HTTP on more than loopback: anyone who"
            " reaches it reads the bouncer's metrics; add interface=127.0.0.1,"
            " or serve it with ssl:",
            endpoint=metrics,
            event="bouncer.warning",
        )


def serveHTTP(
    reactor: Any,
    endpoint: str,
    bouncer: IBouncer,
    requesterName: str,
    proxies: ProxyTrust,
    parent: MultiService,
    bouncerName: str,
    limits: SiteLimits,
    budget: ConnectionBudget,
) -> None:
    """
    Serve the HTTP face on C{endpoint}, as requester C{requesterName}.

    @param limits: what each request and connection may take.
    @param budget: the connections not logged in, shared with the PB face.

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
        options=GuardOptions(loginPath="/login", logoutPath="/logout", proxies=proxies),
    )
    site = KeycardSite(
        httpFace(guard), limits, budget=budget, proxies=proxies, reactor=reactor
    )
    Listener(
        listening, site, endpoint, bouncerName, "HTTP face of bouncer"
    ).setServiceParent(parent)


def serveMetrics(
    reactor: Any,
    endpoint: str,
    store: Any,
    parent: MultiService,
    bouncerName: str,
    requesters: Collection[str] = (),
) -> tuple[PrometheusMetrics, Any]:
    """
    Metrics in a registry of their own (with the process's), served on
    C{endpoint}, and the store with its calls timed.

    @param requesters: the requester names configured, each shown in
        C{keycard_requester_connected}.

    @raise StartupError: if C{endpoint} is not a server endpoint; twistd
        then prints one line.
    """
    try:
        listening = serverEndpoint(reactor, endpoint, "--metrics")
    except EndpointError as e:
        raise StartupError(str(e)) from None
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    metrics = PrometheusMetrics(registry, requesters=requesters)
    site = metricsSite(registry)
    Listener(
        listening, site, endpoint, bouncerName, "metrics of bouncer"
    ).setServiceParent(parent)
    return metrics, metrics.timed(store)
