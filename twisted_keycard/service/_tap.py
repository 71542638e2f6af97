"""
The bouncer service for twistd: C{twistd -n keycard-bouncer --data-dir DIR}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from prometheus_client import CollectorRegistry, ProcessCollector
from twisted.application import strports
from twisted.application.service import IService, MultiService, Service
from twisted.cred import strcred
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.python import usage

from twisted_keycard._secretfiles import exposure
from twisted_keycard.bouncer._bouncer import Bouncer
from twisted_keycard.bouncer._composite import AddressRule, CompositePolicy
from twisted_keycard.bouncer._expression import ExpressionError
from twisted_keycard.bouncer._policy import ExchangeLimits, Quota, Throttle, TokenPolicy
from twisted_keycard.metrics._prometheus import PrometheusMetrics
from twisted_keycard.metrics._web import metricsSite
from twisted_keycard.pb._limits import ConnectionLimits, MessageBudget
from twisted_keycard.pb._root import KeycardRoot, KeycardServerFactory
from twisted_keycard.remote._bouncerside import BouncerRealm
from twisted_keycard.service._datadir import DataDir, NoDataDir
from twisted_keycard.store.sqlite._store import SQLiteStore
from twisted_keycard.tokencard import DEFAULT_MAX_FAMILY_LIFETIME

DEFAULT_LISTEN = "tcp:8800:interface=127.0.0.1"

#: The library's defaults, which the options' defaults repeat.
LIMITS = ConnectionLimits()
_IN, _OUT = LIMITS.loginBudget, LIMITS.budget

#: Options of the limits on connections (see L{ConnectionLimits}): name,
#: default, help, type.
_CONNECTION_OPTIONS: list[list[Any]] = [
    ["login-timeout", LIMITS.loginTimeout, "seconds to log in (0: none)", float],
    ["idle-timeout", 0.0, "seconds a logged-in client may be silent (0: any)", float],
    ["max-unauthenticated", LIMITS.maxUnauthenticated, "clients not logged in", int],
    [
        "max-unauthenticated-per-address",
        LIMITS.maxUnauthenticatedPerAddress,
        "connections not logged in per client address (IPv6: per /64)",
        int,
    ],
    ["login-messages", LIMITS.loginMessages, "messages a client sends to log in", int],
    ["login-message-bytes", _IN.bytes, "bytes of a message before login", int],
    ["login-message-objects", _IN.objects, "items of a message before login", int],
    ["login-message-depth", _IN.depth, "lists nested in a message before login", int],
    ["max-message-bytes", _OUT.bytes, "bytes of a message after login", int],
    ["max-message-objects", _OUT.objects, "items of a message after login", int],
    ["log-lines", LIMITS.logLines, "refusals logged per address and minute", int],
]

#: The requester name of the service's own listener: the same on every
#: bouncer, so that a token issued by one is accepted by the others.
DEFAULT_REQUESTER_NAME = "keycard-bouncer"


class Options(usage.Options, strcred.AuthOptionMixin):
    """
    Options of C{twistd keycard-bouncer}.
    """

    synopsis = "[options]"
    longdesc = (
        "Run a keycard bouncer: clients log in over Perspective Broker with "
        "keycards (SCRAM-SHA-256, tokens, ...), checked against the data "
        "directory's users (or any --auth checker) and recorded in its "
        "SQLite store.  Make a data directory with: keycard init DIR"
    )
    optParameters = [
        [
            "data-dir",
            "d",
            None,
            "data directory [default: $KEYCARD_DATA_DIR, else ./keycard-data]",
        ],
        [
            "listen",
            "l",
            DEFAULT_LISTEN,
            "endpoint to listen on (any Twisted server endpoint)",
        ],
        ["store", None, None, "sqlite:PATH [default: the data directory's keycard.db]"],
        [
            "name",
            None,
            "bouncer",
            "this bouncer's name, written in keycards and tokens",
        ],
        [
            "requester-name",
            None,
            DEFAULT_REQUESTER_NAME,
            "the requester name of this service's own listener, where its"
            " tokens are accepted: bouncers that take each other's tokens share it",
        ],
        ["duration", None, 3600.0, "seconds a keycard and its token are valid", float],
        ["challenge-timeout", None, 30.0, "seconds a client has to answer", float],
        ["max-pending", None, 10_000, "logins in progress at most", int],
        ["max-pending-per-address", None, 100, "logins in progress per address", int],
        [
            "requesters",
            None,
            "",
            "comma-separated avatar ids that may act as requesters",
        ],
        [
            "requester-timeout",
            None,
            60.0,
            "seconds before a silent requester's keycards expire",
            float,
        ],
        ["max-per-avatar", None, None, "keycards one avatar may hold at once", int],
        [
            "seat-pool",
            None,
            None,
            "name of the seat pool every keycard takes a seat of",
        ],
        ["seats", None, None, "size of that seat pool", int],
        ["policy", None, None, "expression over algorithms, e.g. 'scram and address'"],
        ["throttle-account", None, 100, "failed logins per account per window", int],
        ["throttle-address", None, 30, "failed logins per address per window", int],
        ["throttle-window", None, 3600.0, "seconds of the throttling window", float],
        *([name, None, *rest] for name, *rest in _CONNECTION_OPTIONS),
        [
            "token-audiences",
            None,
            "",
            "comma-separated requester names that take every token, besides"
            " the one it was issued through",
        ],
        [
            "max-family-lifetime",
            None,
            DEFAULT_MAX_FAMILY_LIFETIME,
            "seconds after a password login past which the tokens of its"
            " chain of token logins are refused",
            float,
        ],
        [
            "metrics",
            None,
            None,
            "endpoint serving Prometheus metrics at /metrics, e.g."
            " tcp:9800:interface=127.0.0.1 [default: none]",
        ],
    ]
    optFlags = [
        ["no-tokens", None, "do not issue tokens"],
        ["bind-tokens", None, "bind tokens to the client address they were issued to"],
        ["no-throttle", None, "do not throttle failed logins"],
        [
            "insecure-permissions",
            None,
            "start even if the data directory, store or users file is"
            " readable by other users",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["allow"] = []
        self["deny"] = []

    def opt_allow(self, cidr: str) -> None:
        """
        network the 'address' algorithm allows (repeatable; IPv4 or IPv6)
        """
        self["allow"].append(cidr)

    def opt_deny(self, cidr: str) -> None:
        """
        network the 'address' algorithm denies (repeatable)
        """
        self["deny"].append(cidr)

    def postOptions(self) -> None:
        try:
            self.dataDir = DataDir.open(DataDir.default(self["data-dir"]))
        except NoDataDir as e:
            raise usage.UsageError(str(e)) from None
        store = self["store"] or f"sqlite:{self.dataDir.database}"
        kind, _, path = store.partition(":")
        if kind != "sqlite" or not path:
            raise usage.UsageError(f"unknown store {store!r}; use sqlite:PATH")
        self.storePath = path
        secrets = [
            self.dataDir.path,
            *(Path(path + end) for end in ("", "-wal", "-shm")),
        ]
        if not self.get("credCheckers"):
            self.addChecker(strcred.makeChecker(f"scram:{self.dataDir.users}"))
            secrets.append(self.dataDir.users)
        if not self["insecure-permissions"]:
            refuseExposed(secrets)
        if (self["seat-pool"] is None) != (self["seats"] is None):
            raise usage.UsageError("--seat-pool and --seats go together")
        for name in (
            "duration",
            "challenge-timeout",
            "requester-timeout",
            "throttle-window",
            "max-family-lifetime",
        ):
            if self[name] <= 0:
                raise usage.UsageError(f"--{name} must be positive")
        self.limits = self._connectionLimits()
        self.tokens = None
        if not self["no-tokens"]:
            self.tokens = TokenPolicy(
                bindAddress=self["bind-tokens"],
                audiences=_names(self["token-audiences"]),
                maxFamilyLifetime=self["max-family-lifetime"],
            )
        self.policy = None
        try:
            rule = AddressRule.fromStrings(self["allow"], self["deny"])
            if self["policy"] is not None:
                self.policy = CompositePolicy(self["policy"], address=rule)
        except (ValueError, ExpressionError) as e:
            raise usage.UsageError(str(e)) from None

    def _connectionLimits(self) -> ConnectionLimits:
        """
        The L{ConnectionLimits} the options ask for.
        """
        try:
            return ConnectionLimits(
                loginTimeout=self["login-timeout"] or None,
                idleTimeout=self["idle-timeout"] or None,
                maxUnauthenticated=self["max-unauthenticated"],
                maxUnauthenticatedPerAddress=self["max-unauthenticated-per-address"],
                loginMessages=self["login-messages"],
                loginBudget=MessageBudget(
                    bytes=self["login-message-bytes"],
                    objects=self["login-message-objects"],
                    depth=self["login-message-depth"],
                ),
                budget=attrs.evolve(
                    LIMITS.budget,
                    bytes=self["max-message-bytes"],
                    objects=self["max-message-objects"],
                ),
                logLines=self["log-lines"],
            )
        except ValueError as e:
            raise usage.UsageError(str(e)) from None


def refuseExposed(paths: list[Path]) -> None:
    """
    Stop twistd with one line if a file or directory holding secrets (the
    token signing keys, verifiers) is open to other local users, who could
    forge tokens with them.

    @raise SystemExit: naming the first such path.
    """
    for path in paths:
        problem = exposure(path)
        if problem is not None:
            raise SystemExit(
                f"keycard-bouncer: refusing to start: {problem}, open to other"
                " users; make it 0600 (directories 0700), or start with"
                " --insecure-permissions"
            )


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
    """
    top = MultiService()
    storeService = _Store(options.storePath)
    storeService.setServiceParent(top)
    store: Any = storeService.store
    metrics = None
    if options["metrics"] is not None:
        metrics, store = _metrics(options["metrics"], store, top)
    quota = None
    if options["max-per-avatar"] is not None or options["seat-pool"] is not None:
        quota = Quota(options["max-per-avatar"], options["seat-pool"], options["seats"])
    bouncer = Bouncer(
        options["credCheckers"],
        store,
        clock=_reactor(),
        name=options["name"],
        duration=options["duration"],
        limits=ExchangeLimits(
            timeout=options["challenge-timeout"],
            maxPending=options["max-pending"],
            maxPendingPerAddress=options["max-pending-per-address"],
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
        metrics=metrics,
    )
    bouncer.setServiceParent(top)
    requesters = _names(options["requesters"])
    realm = BouncerRealm(bouncer, requesters, _reactor(), options["requester-timeout"])
    root = KeycardRoot(bouncer, Portal(realm), requesterName=options["requester-name"])
    factory = KeycardServerFactory(root, limits=options.limits, clock=_reactor())
    listener = strports.service(options["listen"], factory)
    listener.setServiceParent(top)
    return top


def _names(text: str) -> set[str]:
    """
    The names in a comma-separated list.
    """
    return {n.strip() for n in text.split(",") if n.strip()}


def _metrics(
    endpoint: str, store: Any, parent: MultiService
) -> tuple[PrometheusMetrics, Any]:
    """
    Metrics in a registry of their own (with the process's), served on
    C{endpoint}, and the store with its calls timed.

    @raise SystemExit: with one line, if C{endpoint} is not a server
        endpoint.
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    metrics = PrometheusMetrics(registry)
    try:
        listener = strports.service(endpoint, metricsSite(registry))
    except Exception as e:
        raise SystemExit(f"keycard-bouncer: --metrics {endpoint}: {e}") from None
    listener.setServiceParent(parent)
    return metrics, metrics.timed(store)


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor
