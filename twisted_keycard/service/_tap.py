"""
The bouncer service for twistd: C{twistd -n keycard-bouncer --data-dir DIR}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
from twisted_keycard.pb._root import KeycardRoot, KeycardServerFactory
from twisted_keycard.remote._bouncerside import BouncerRealm
from twisted_keycard.service._datadir import DataDir, NoDataDir
from twisted_keycard.service._mocksecret import giveMockSecret, storedMockSecret
from twisted_keycard.store.sqlite._store import SQLiteStore

DEFAULT_LISTEN = "tcp:8800:interface=127.0.0.1"


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
        ):
            if self[name] <= 0:
                raise usage.UsageError(f"--{name} must be positive")
        self.policy = None
        try:
            rule = AddressRule.fromStrings(self["allow"], self["deny"])
            if self["policy"] is not None:
                self.policy = CompositePolicy(self["policy"], address=rule)
        except (ValueError, ExpressionError) as e:
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
    # Read now: mock challenges are the same on every bouncer of the store.
    giveMockSecret(options["credCheckers"], storedMockSecret(options.storePath))
    storeService = _Store(options.storePath)
    storeService.setServiceParent(top)
    store: Any = storeService.store
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
        tokens=None
        if options["no-tokens"]
        else TokenPolicy(bindAddress=options["bind-tokens"]),
        quota=quota,
        policy=options.policy,
        throttle=None
        if options["no-throttle"]
        else Throttle(
            options["throttle-account"],
            options["throttle-address"],
            options["throttle-window"],
        ),
    )
    bouncer.setServiceParent(top)
    requesters = {n.strip() for n in options["requesters"].split(",") if n.strip()}
    realm = BouncerRealm(bouncer, requesters, _reactor(), options["requester-timeout"])
    root = KeycardRoot(bouncer, Portal(realm), requesterName=options["name"])
    listener = strports.service(options["listen"], KeycardServerFactory(root))
    listener.setServiceParent(top)
    return top


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor
