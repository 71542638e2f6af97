"""
The bouncer service for twistd: C{twistd -n keycard-bouncer --data-dir DIR}.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred

from twisted_keycard._hashpool import HashPool
from twisted_keycard.bouncer._bouncer import Bouncer
from twisted_keycard.bouncer._policy import (
    ExchangeLimits,
    Quota,
    Throttle,
)
from twisted_keycard.passwords import PasswordFile
from twisted_keycard.pb._root import KeycardRoot
from twisted_keycard.pb._serverfactory import KeycardServerFactory
from twisted_keycard.remote._bouncerside import BouncerRealm
from twisted_keycard.service._endpoints import EndpointError, serverEndpoint
from twisted_keycard.service._httpservice import passwordCheckers, serveHTTP
from twisted_keycard.service._metricsservice import serveMetrics
from twisted_keycard.service._startup import (
    Listener,
    StartupError,
    StoreCheck,
    installExitHook,
)
from twisted_keycard.service._stockcheckers import (
    warnPlainPasswords,
)
from twisted_keycard.service._stores import (
    RedisCheck,
    StoreService,
)
from twisted_keycard.service._tapoptions import Options, httpRequesterName, names
from twisted_keycard.sessions._bouncerside import TicketGrantingRealm
from twisted_keycard.sessions._granter import TicketGranter
from twisted_keycard.sessions._tickets import TicketLimits
from twisted_keycard.store.redis._store import FAILURES_KEPT, RedisStore
from twisted_keycard.store.sqlite._store import SQLiteStore

__all__ = ["Options", "makeService"]


class _Store(Service):
    """
    Opens the SQLite store before the services that use it start.
    """

    def __init__(self, path: str) -> None:
        self.store = SQLiteStore(path)

    def startService(self) -> None:
        super().startService()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.store.close()


def makeService(options: Options) -> IService:
    """
    The bouncer, its store and its PB listener, as one service.

    @raise StartupError: for a C{--listen} that names no endpoint or the
        bouncer's parts that do not fit; twistd then prints one line.
    """
    installExitHook()
    try:
        endpoint = serverEndpoint(_reactor(), options["listen"])
    except EndpointError as e:
        raise StartupError(str(e)) from None
    warnPlainPasswords(options["listen"], options["credCheckers"])
    top = MultiService()
    store: Any
    if options.redisURL is not None:
        RedisCheck(
            options.redisURL, options.storePassword, options["credCheckers"]
        ).setServiceParent(top)
        store = RedisStore(
            options.redisURL,
            _reactor(),
            password=options.storePassword,
            tokensWhenDown=options["tokens-when-store-down"],
            failuresKept=max(options["throttle-window"], FAILURES_KEPT),
        )
        StoreService(store).setServiceParent(top)
    else:
        assert options.storePath is not None
        StoreCheck(options.storePath, options["credCheckers"]).setServiceParent(top)
        storeService = _Store(options.storePath)
        storeService.setServiceParent(top)
        store = storeService.store
    metrics = None
    if options["metrics"] is not None:
        metrics, store = serveMetrics(
            _reactor(), options["metrics"], store, top, options["name"]
        )
    quota = None
    if options["max-per-avatar"] is not None or options["seat-pool"] is not None:
        quota = Quota(options["max-per-avatar"], options["seat-pool"], options["seats"])
    try:
        bouncer = _bouncer(options, store, quota, metrics)
    except ValueError as e:
        raise StartupError(f"cannot make the bouncer: {e}") from None
    bouncer.setServiceParent(top)
    hashes = HashPool(_reactor(), options["hash-threads"], options["hash-queue"])
    for checker in options["credCheckers"]:
        if isinstance(checker, PasswordFile):
            checker.hashPool = hashes
            checker.maxPasswordBytes = options["max-password-bytes"]
    requesters = names(options["requesters"])
    realm = BouncerRealm(bouncer, requesters, _reactor(), options["requester-timeout"])
    granter = TicketGranter(
        bouncer, _reactor(), TicketLimits(timeout=options["ticket-timeout"])
    )
    granter.setServiceParent(top)
    sessions = TicketGrantingRealm(
        realm, granter, names(options["services"]), options["requester-name"]
    )
    root = KeycardRoot(
        bouncer, Portal(sessions), requesterName=options["requester-name"]
    )
    factory = KeycardServerFactory(root, limits=options.limits, clock=_reactor())
    listener = Listener(endpoint, factory, options["listen"], options["name"])
    listener.setServiceParent(top)
    if options["http"] is not None:
        serveHTTP(
            _reactor(),
            options["http"],
            bouncer,
            httpRequesterName(options),
            options.proxies,
            top,
            options["name"],
        )
    return top


def _bouncer(
    options: Options, store: Any, quota: Quota | None, metrics: Any
) -> Bouncer:
    checkers = list(options["credCheckers"])
    if options["http"] is not None:
        checkers.extend(passwordCheckers(checkers))
    return Bouncer(
        checkers,
        store,
        clock=_reactor(),
        name=options["name"],
        duration=options["duration"],
        limits=ExchangeLimits(
            timeout=options["challenge-timeout"],
            maxPending=options["max-pending"],
            maxPendingPerAddress=options["max-pending-per-address"],
            maxPendingPerConnection=options["max-pending-per-connection"],
        ),
        tokens=options.tokens,
        quota=quota,
        policy=options.policy,
        throttle=None
        if options["no-throttle"]
        else Throttle(
            options["throttle-account"],
            options["throttle-address"],
            options["throttle-window"],
        ),
        upkeep=options.upkeep,
        metrics=metrics,
    )


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor
