"""
The bouncer service for twistd: C{twistd -n keycard-bouncer --data-dir
DIR}; its options (name, default, help), checked as a whole so that a bad
one is one line that names it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from twisted.application.service import IService, MultiService, Service
from twisted.cred import strcred
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.python import usage

from twisted_keycard._hashpool import HashPool
from twisted_keycard.bouncer import (
    AddressRule,
    Bouncer,
    CompositePolicy,
    ExchangeLimits,
    ExpressionError,
    Quota,
    SeatQueuePolicy,
    Throttle,
    TokenPolicy,
    Upkeep,
)
from twisted_keycard.passwords import PasswordFile
from twisted_keycard.pb import (
    ConnectionBudget,
    ConnectionLimits,
    KeycardRoot,
    KeycardServerFactory,
    MessageBudget,
)
from twisted_keycard.remote import BouncerRealm
from twisted_keycard.service._checkers import (
    checkPolicyKinds,
    servingKeycards,
    warnPlainPasswords,
)
from twisted_keycard.service._datadir import DataDir, KeyFileError, NoDataDir, RunLeases
from twisted_keycard.service._services import (
    passwordCheckers,
    serveHTTP,
    serveMetrics,
    warnExposedFaces,
)
from twisted_keycard.service._startup import (
    PROGRAM,
    Daemonized,
    EndpointError,
    LeaseRecord,
    Listener,
    RedisCheck,
    StartupError,
    StoreCheck,
    StoreService,
    checkEarly,
    daemonizing,
    dropsPrivileges,
    installExitHook,
    quietParent,
    refuseExposed,
    serverEndpoint,
    sqlitePath,
    storePassword,
)
from twisted_keycard.sessions import TicketGranter, TicketGrantingRealm, TicketLimits
from twisted_keycard.store.redis import (
    KeyEncryptionKey,
    RedisStore,
    RedisURL,
    isRedisURL,
    parseRedisURL,
)
from twisted_keycard.store.sqlite import SQLiteStore, journalPath
from twisted_keycard.tokens import DEFAULT_MAX_FAMILY_LIFETIME
from twisted_keycard.web import ProxyTrust, SiteLimits

__all__ = ["Options", "makeService"]


_KINDS = {float: "a number", int: "a whole number"}


class _NamedCoercion(usage.CoerceParameter):
    """
    Converts an option's value, and says which option and what it takes
    when the value does not convert (twisted's message names neither).
    """

    def dispatch(self, parameterName: str, value: str | None) -> None:
        try:
            super().dispatch(parameterName, value)
        except usage.UsageError:
            if value is None:
                raise
            kind = _KINDS.get(self.coerce, "another value")
            raise usage.UsageError(
                f"--{parameterName} takes {kind}, not {value!r}"
            ) from None


def namedCoercions(options: usage.Options) -> None:
    """
    Make the typed parameters of C{options} name themselves in their
    errors.
    """
    dispatch: dict[str, Any] = options._dispatch
    for name, handler in dispatch.items():
        if type(handler) is usage.CoerceParameter:
            dispatch[name] = _NamedCoercion(options, handler.coerce)


def oneLine(error: BaseException) -> str:
    """
    The first line of an error's message (a policy's parse error adds the
    expression and a pointer below, without which its first line ends with
    a colon); a file error names the file.
    """
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror.lower()}"
    lines = str(error).strip().splitlines()
    if not lines:
        return type(error).__name__
    return lines[0].rstrip(":") if len(lines) > 1 else lines[0]


#: The library's defaults, which the options' defaults repeat.
LIMITS = ConnectionLimits()
SITE_LIMITS = SiteLimits()
_IN, _OUT = LIMITS.loginBudget, LIMITS.budget

#: twistd options (name, short, default, help, type), as C{optParameters}.
CONNECTION_OPTIONS: list[list[Any]] = [
    ["login-timeout", None, LIMITS.loginTimeout, "seconds to log in (0: none)", float],
    [
        "idle-timeout",
        None,
        0.0,
        "seconds a logged-in client may be silent (0: any)",
        float,
    ],
    [
        "max-unauthenticated",
        None,
        LIMITS.maxUnauthenticated,
        "clients not logged in",
        int,
    ],
    [
        "max-unauthenticated-per-address",
        None,
        LIMITS.maxUnauthenticatedPerAddress,
        "connections not logged in per client address (IPv6: per /64)",
        int,
    ],
    [
        "login-messages",
        None,
        LIMITS.loginMessages,
        "messages a client sends to log in",
        int,
    ],
    ["login-message-bytes", None, _IN.bytes, "bytes of a message before login", int],
    [
        "login-message-objects",
        None,
        _IN.objects,
        "items of a message before login",
        int,
    ],
    [
        "login-message-depth",
        None,
        _IN.depth,
        "lists nested in a message before login",
        int,
    ],
    ["max-message-bytes", None, _OUT.bytes, "bytes of a message after login", int],
    ["max-message-objects", None, _OUT.objects, "items of a message after login", int],
    [
        "log-lines",
        None,
        LIMITS.logLines,
        "refusals logged per address and minute",
        int,
    ],
]


def connectionLimits(options: Mapping[str, Any]) -> ConnectionLimits:
    """
    The L{ConnectionLimits} the options ask for.

    @raise usage.UsageError: for limits that do not make sense.
    """
    try:
        return ConnectionLimits(
            loginTimeout=options["login-timeout"] or None,
            idleTimeout=options["idle-timeout"] or None,
            maxUnauthenticated=options["max-unauthenticated"],
            maxUnauthenticatedPerAddress=options["max-unauthenticated-per-address"],
            loginMessages=options["login-messages"],
            loginBudget=MessageBudget(
                bytes=options["login-message-bytes"],
                objects=options["login-message-objects"],
                depth=options["login-message-depth"],
            ),
            budget=attrs.evolve(
                LIMITS.budget,
                bytes=options["max-message-bytes"],
                objects=options["max-message-objects"],
            ),
            logLines=options["log-lines"],
        )
    except ValueError as e:
        raise usage.UsageError(str(e)) from None


def siteLimits(options: Mapping[str, Any], limits: ConnectionLimits) -> SiteLimits:
    """
    The L{SiteLimits} of the HTTP face the options ask for: its own
    deadlines, and the PB face's login deadline (C{limits.loginTimeout}).

    @raise usage.UsageError: for a deadline that is not a number of seconds.
    """
    timeouts = {}
    for name in ("http-request-timeout", "http-idle-timeout"):
        value = options[name]
        if not (math.isfinite(value) and value >= 0):
            raise usage.UsageError(f"--{name} must be a number of seconds (0: any)")
        timeouts[name] = value or None
    return SiteLimits(
        requestTimeout=timeouts["http-request-timeout"],
        idleTimeout=timeouts["http-idle-timeout"],
        loginTimeout=limits.loginTimeout,
    )


DEFAULT_LISTEN = "tcp:8800:interface=127.0.0.1"

#: The requester name of the service's own listener: the same on every
#: bouncer, so that a token issued by one is accepted by the others.
DEFAULT_REQUESTER_NAME = "keycard-bouncer"

PARAMETERS: list[list[Any]] = [
    [
        "data-dir",
        "d",
        None,
        "data directory [default: $KEYCARD_DATA_DIR, else ./keycard-data]",
    ],
    [
        "store",
        None,
        None,
        "sqlite:PATH, redis://HOST:PORT/DB, rediss://HOST:PORT/DB?ca=FILE or"
        " redis+sentinel://H1:P1,H2:P2/MASTER/DB, with ?prefix=P [default: the"
        " data directory's store, keycard.db unless keycard init --store]",
    ],
    [
        "store-password-file",
        None,
        None,
        "file whose first line is the Redis store's password [default: the"
        " data directory's, else $KEYCARD_REDIS_PASSWORD]",
    ],
    [
        "tokens-when-store-down",
        None,
        "refuse",
        "refuse or accept token logins while the store's revocations cannot"
        " be read (for three follow intervals: the store is unreachable)",
    ],
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
        "max-pending-per-connection",
        None,
        4,
        "logins in progress per client connection",
        int,
    ],
    ["hash-threads", None, 1, "password hashes computed at once", int],
    ["hash-queue", None, 16, "password hashes waiting, at most", int],
    [
        "max-password-bytes",
        None,
        256,
        "longer passwords are refused before hashing",
        int,
    ],
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
    [
        "services",
        None,
        "",
        "comma-separated avatar ids of services that redeem session tickets",
    ],
    [
        "ticket-timeout",
        None,
        5.0,
        "seconds from a session ticket's grant to its confirmation",
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
    [
        "seats-per-avatar",
        None,
        None,
        "seats of that pool one avatar may hold at once",
        int,
    ],
    [
        "seat-queue",
        None,
        0,
        "clients that may wait in the seat pool's queue when it is full (a"
        " login that asks to wait is queued, first come, first served); 0: no"
        " queue, a full pool refuses",
        int,
    ],
    [
        "seat-queue-grace",
        None,
        30.0,
        "seconds a waiting client's place is kept after its connection is"
        " lost (it comes back with its ticket and keeps it)",
        float,
    ],
    [
        "seat-queue-per-avatar",
        None,
        None,
        "places of the seat queue one avatar may hold at once",
        int,
    ],
    [
        "seat-queue-per-address",
        None,
        None,
        "places of the seat queue one client address may hold at once",
        int,
    ],
    ["policy", None, None, "expression over algorithms, e.g. 'scram and address'"],
    ["throttle-account", None, 100, "failed logins per account per window", int],
    ["throttle-address", None, 30, "failed logins per address per window", int],
    ["throttle-window", None, 3600.0, "seconds of the throttling window", float],
    [
        "throttle-retention",
        None,
        None,
        "seconds the store keeps a failed login, at least the window: the"
        " longest window of the bouncers sharing the store [default: the window]",
        float,
    ],
    [
        "throttle-flush-interval",
        None,
        None,
        "seconds between two flushes of the failed logins past their"
        " retention [default: a twelfth of the window, 1 to 300]",
        float,
    ],
    *CONNECTION_OPTIONS,
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
        "lease-time",
        None,
        10.0,
        "seconds after which the seats of a bouncer that stopped renewing"
        " its lease (killed) are freed; at least 2",
        float,
    ],
    [
        "heartbeat",
        None,
        30.0,
        "seconds between pings of each client holding a keycard; one that"
        " answers none of 3 is dropped and its seat freed (0: no pings)",
        float,
    ],
    [
        "metrics",
        None,
        None,
        "endpoint serving Prometheus metrics at /metrics, e.g."
        " tcp:9800:interface=127.0.0.1 [default: none]",
    ],
    [
        "http",
        None,
        None,
        "endpoint of the HTTP face: POST /token, GET /whoami, POST /logout,"
        " /login (e.g. ssl:8443:privateKey=DIR/tls/server.pem)",
    ],
    [
        "http-request-timeout",
        None,
        SITE_LIMITS.requestTimeout,
        "seconds an HTTP client has to send a whole request (0: any)",
        float,
    ],
    [
        "http-idle-timeout",
        None,
        SITE_LIMITS.idleTimeout,
        "seconds an HTTP connection may wait for its next request (0: any)",
        float,
    ],
]
FLAGS: list[list[Any]] = [
    ["no-tokens", None, "do not issue tokens"],
    ["bind-tokens", None, "bind tokens to the client address they were issued to"],
    ["no-throttle", None, "do not throttle failed logins"],
    [
        "insecure-permissions",
        None,
        "start even if the data directory, store or users file is"
        " readable by other users",
    ],
    [
        "insecure-redis",
        None,
        "start even if the Redis store takes commands without a password"
        " (anyone who reaches it can revoke and rewrite its records)",
    ],
]


class Options(usage.Options, strcred.AuthOptionMixin):
    """
    Options of C{twistd keycard-bouncer}.
    """

    synopsis = "[options]"
    longdesc = (
        "Run a keycard bouncer: clients log in over Perspective Broker with "
        "keycards (SCRAM-SHA-256, tokens, ...), checked against the data "
        "directory's users (or any --auth checker) and recorded in its "
        "store (SQLite, or Redis for bouncers on several hosts).  Make a data "
        "directory with: keycard init DIR [--store redis://HOST:PORT/DB]"
    )
    optParameters = PARAMETERS
    optFlags = FLAGS

    def __init__(self) -> None:
        super().__init__()
        self["allow"] = []
        self["deny"] = []
        self.authNames: list[str] = []
        self["http-trust-proxy"] = []
        self["claims"] = {}
        self["listen"] = DEFAULT_LISTEN
        #: Every endpoint to listen on, in order; C{self["listen"]} is the
        #: first.
        self.listens: list[str] = []
        namedCoercions(self)

    def parseOptions(self, options: Any = None) -> None:
        """
        Parse the options; a bad one stops twistd with one line (twistd
        would print the whole usage and the error after it).

        @raise SystemExit: naming what is wrong.
        """
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            hint = " (see --help)" if "not recognized" in str(e) else ""
            raise SystemExit(f"{PROGRAM}: {oneLine(e)}{hint}") from None

    def opt_auth(self, description: str) -> None:
        """
        checker to log in against (repeatable): scram:FILE, srp:FILE,
        hmac:FILE, sshkeys:FILE, htpasswd:FILE, or any twisted.cred checker
        of user names and passwords (memory:..., file:FILE, unix), served
        through password keycards, over TLS only [default: the data
        directory's users]; --help-auth lists them
        """
        try:
            _readable(description)
            self.addChecker(strcred.makeChecker(description))
        except strcred.InvalidAuthType:
            raise usage.UsageError(
                f"unknown --auth type in {description!r}; --help-auth lists them"
            ) from None
        except Exception as e:
            raise usage.UsageError(
                f"bad --auth {description!r}: {oneLine(e)}"
            ) from None
        self.authNames.append(description)

    # usage.Options prints an option's docstring as it is: one line.
    opt_auth.__doc__ = " ".join((opt_auth.__doc__ or "").split())

    def opt_listen(self, endpoint: str) -> None:
        """
        endpoint to listen on, any Twisted server endpoint (repeatable: each
        one serves the same bouncer) [default: tcp:8800:interface=127.0.0.1]
        """
        if endpoint in self.listens:
            raise usage.UsageError(f"--listen {endpoint} given twice")
        if not self.listens:
            self["listen"] = endpoint
        self.listens.append(endpoint)

    opt_listen.__doc__ = " ".join((opt_listen.__doc__ or "").split())
    opt_l = opt_listen

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

    def opt_http_trust_proxy(self, cidr: str) -> None:
        """
        network of reverse proxies whose X-Forwarded-For and
        X-Forwarded-Proto the HTTP face believes (repeatable)
        """
        self["http-trust-proxy"].append(cidr)

    def opt_claim(self, claim: str) -> None:
        """
        KEY=VALUE written in every token issued after a password login, and
        required of every token presented (repeatable; license servers:
        vendor, program, version)
        """
        key, equals, value = claim.partition("=")
        if not equals or not key:
            raise usage.UsageError(f"--claim takes KEY=VALUE, not {claim!r}")
        if key in self["claims"]:
            raise usage.UsageError(f"--claim {key} given twice")
        self["claims"][key] = value

    def _store(self) -> list[Path]:
        """
        Read C{--store} (or the data directory's store) and its password.

        @return: the files that hold the store's secrets.
        """
        store = self["store"] or self.dataDir.store
        self.storePath: str | None = None
        self.redisURL: RedisURL | None = None
        self.storePassword: str | None = None
        self.keyEncryptionKey: KeyEncryptionKey | None = None
        if self["tokens-when-store-down"] not in ("refuse", "accept"):
            raise usage.UsageError("--tokens-when-store-down takes refuse or accept")
        if not isRedisURL(store):
            try:
                path = self.storePath = sqlitePath(store)
            except ValueError as e:
                raise usage.UsageError(str(e)) from None
            files = [Path(path + end) for end in ("", "-wal", "-shm")]
            journal = journalPath(path)
            return files if journal is None else [*files, journal]
        try:
            self.redisURL = parseRedisURL(store)
        except ValueError as e:
            raise usage.UsageError(f"bad --store: {e}") from None
        try:
            self.keyEncryptionKey = self.dataDir.keyEncryptionKey()
        except KeyFileError as e:
            raise usage.UsageError(
                f"the Redis store's secrets are wrapped under the data"
                f" directory's key-encryption key, and {e}"
            ) from None
        passwordFile = self["store-password-file"]
        if passwordFile is None and not self["store"]:
            passwordFile = self.dataDir.storePasswordFile
        try:
            self.storePassword = storePassword(passwordFile)
        except (OSError, ValueError) as e:
            reason = e.strerror.lower() if isinstance(e, OSError) and e.strerror else e
            raise usage.UsageError(
                f"cannot read the store's password file: {reason}"
            ) from None
        secrets = [self.dataDir.keyEncryptionKeyFile]
        return secrets if passwordFile is None else [*secrets, Path(passwordFile)]

    def _seatQueue(self) -> SeatQueuePolicy | None:
        """
        The seat pool's queue, from C{--seat-queue} and its shares.

        @raise usage.UsageError: for a queue without a pool, or bounds that
            are not counts.
        """
        size = self["seat-queue"]
        grace = self["seat-queue-grace"]
        if not (math.isfinite(grace) and grace > 0):
            raise usage.UsageError("--seat-queue-grace must be a positive number")
        shares = ("seat-queue-per-avatar", "seat-queue-per-address")
        if size < 0:
            raise usage.UsageError("--seat-queue must be a number of clients (0: none)")
        if size == 0:
            for name in shares:
                if self[name] is not None:
                    raise usage.UsageError(f"--{name} needs --seat-queue")
            return None
        if self["seat-pool"] is None:
            raise usage.UsageError("--seat-queue needs --seat-pool")
        for name in shares:
            if self[name] is not None and not 1 <= self[name] <= size:
                raise usage.UsageError(f"--{name} must be between 1 and --seat-queue")
        return SeatQueuePolicy(
            size,
            grace,
            self["seat-queue-per-avatar"],
            self["seat-queue-per-address"],
        )

    def postOptions(self) -> None:
        try:
            self.dataDir = DataDir.open(DataDir.default(self["data-dir"]))
        except NoDataDir as e:
            raise usage.UsageError(str(e)) from None
        secrets = [self.dataDir.path, *self._store()]
        if not self.get("credCheckers"):
            self.opt_auth(f"scram:{self.dataDir.users}")
            secrets.append(self.dataDir.users)
        try:
            self["credCheckers"] = servingKeycards(self["credCheckers"], self.authNames)
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        if not self["insecure-permissions"]:
            refuseExposed(secrets)
        if (self["seat-pool"] is None) != (self["seats"] is None):
            raise usage.UsageError("--seat-pool and --seats go together")
        share = self["seats-per-avatar"]
        if share is not None:
            if self["seat-pool"] is None:
                raise usage.UsageError("--seats-per-avatar needs --seat-pool")
            if not 1 <= share <= self["seats"]:
                raise usage.UsageError(
                    "--seats-per-avatar must be between 1 and --seats"
                )
        self.seatQueue = self._seatQueue()
        for name in (
            "duration",
            "challenge-timeout",
            "requester-timeout",
            "ticket-timeout",
            "throttle-window",
            "max-family-lifetime",
            "lease-time",
        ):
            if not (math.isfinite(self[name]) and self[name] > 0):
                raise usage.UsageError(f"--{name} must be a positive number")
        if not (math.isfinite(self["heartbeat"]) and self["heartbeat"] >= 0):
            raise usage.UsageError("--heartbeat must be a number of seconds (0: none)")
        for name in ("throttle-retention", "throttle-flush-interval"):
            if self[name] is not None and not (
                math.isfinite(self[name]) and self[name] > 0
            ):
                raise usage.UsageError(f"--{name} must be a positive number")
        retention = self["throttle-retention"]
        if retention is not None and retention < self["throttle-window"]:
            raise usage.UsageError(
                "--throttle-retention must be at least --throttle-window"
                " (failed logins in the window still count)"
            )
        for name in ("throttle-account", "throttle-address"):
            if self[name] < 1:
                raise usage.UsageError(f"--{name} must be at least 1")
        self.throttle = Throttle(
            self["throttle-account"],
            self["throttle-address"],
            self["throttle-window"],
            retention=retention,
            flushInterval=self["throttle-flush-interval"],
        )
        try:
            self.upkeep = Upkeep(leaseTime=self["lease-time"])
        except ValueError:
            raise usage.UsageError(
                "--lease-time must be at least 2 seconds (two renewals)"
            ) from None
        self.limits = connectionLimits(self)
        self.siteLimits = siteLimits(self, self.limits)
        self.tokens = None
        if not self["no-tokens"]:
            try:
                self.tokens = TokenPolicy(
                    bindAddress=self["bind-tokens"],
                    claims=self["claims"],
                    audiences=names(self["token-audiences"]),
                    maxFamilyLifetime=self["max-family-lifetime"],
                    # The service's own faces take each other's tokens, and
                    # no application requester's.
                    groups=[faceNames(self)],
                    whenStoreDown=self["tokens-when-store-down"],
                )
            except ValueError as e:
                raise usage.UsageError(f"--claim: {e}") from None
        elif self["claims"]:
            raise usage.UsageError("--claim is written in tokens: drop --no-tokens")
        faces = sorted(names(self["requesters"]) & faceNames(self))
        if faces:
            raise usage.UsageError(
                f"--requesters {faces[0]}: that is the name of one of this"
                " service's own faces; a requester under it would issue"
                " tokens taken there"
            )
        if self["http"] is not None and self["no-tokens"]:
            raise usage.UsageError("--http hands out tokens: drop --no-tokens")
        try:
            self.proxies = ProxyTrust(self["http-trust-proxy"])
        except ValueError as e:
            raise usage.UsageError(f"--http-trust-proxy: {e}") from None
        for name, least in (
            ("max-pending-per-connection", 1),
            ("hash-threads", 1),
            ("hash-queue", 0),
            ("max-password-bytes", 1),
        ):
            if self[name] < least:
                raise usage.UsageError(f"--{name} must be at least {least}")
        self.policy = None
        try:
            rule = AddressRule.fromStrings(self["allow"], self["deny"])
        except ValueError as e:
            raise usage.UsageError(f"bad --allow or --deny: {e}") from None
        if self["policy"] is not None:
            try:
                self.policy = CompositePolicy(self["policy"], address=rule)
            except ExpressionError as e:
                raise usage.UsageError(f"bad --policy: {oneLine(e)}") from None
            try:
                checkPolicyKinds(
                    self.policy, self["credCheckers"], not self["no-tokens"]
                )
            except ValueError as e:
                raise usage.UsageError(str(e)) from None


def _readable(description: str) -> None:
    """
    Check that the file of a C{file:FILE} checker can be read: twisted's
    only warns about a missing one, and then serves nobody.

    @raise OSError: naming the file, if it cannot be read.
    """
    kind, _, path = description.partition(":")
    if kind == "file" and path.strip():
        with open(path, "rb"):
            pass


def httpRequesterName(options: Any) -> str:
    """
    The requester name of the service's HTTP face: its own, so that the
    bouncer tells each face about its own clients.
    """
    return f"{options['requester-name']}/http"


def ticketsAudienceName(options: Any) -> str:
    """
    The audience name of the service's ticket granting (brokered
    sessions): a ticket is granted only for a keycard whose token names it.
    """
    return f"{options['requester-name']}/tickets"


def faceNames(options: Any) -> frozenset[str]:
    """
    The audience names of the service's own faces: its PB face (the
    requester name), its HTTP face and its ticket granting.  A token issued
    at one is taken at the others; a token issued through an application
    requester names none of them.
    """
    return frozenset(
        {
            options["requester-name"],
            httpRequesterName(options),
            ticketsAudienceName(options),
        }
    )


def names(text: str) -> set[str]:
    """
    The names in a comma-separated list.
    """
    return {n.strip() for n in text.split(",") if n.strip()}


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
    listens = options.listens or [options["listen"]]
    try:
        endpoints = [serverEndpoint(_reactor(), listen) for listen in listens]
    except EndpointError as e:
        raise StartupError(str(e)) from None
    for listen in listens:
        warnPlainPasswords(listen, options["credCheckers"])
    warnExposedFaces(options["http"], options["metrics"], options.proxies)
    top = MultiService()
    if daemonizing(options):
        quietParent()
        top = Daemonized(os.dup(2))
    store: Any
    if options.redisURL is not None:
        assert options.keyEncryptionKey is not None
        RedisCheck(
            options.redisURL,
            options.storePassword,
            options.keyEncryptionKey,
            options["credCheckers"],
            insecure=options["insecure-redis"],
            keyFile=options.dataDir.keyEncryptionKeyFile,
        ).setServiceParent(top)
        store = RedisStore(
            options.redisURL,
            _reactor(),
            password=options.storePassword,
            keyEncryptionKey=options.keyEncryptionKey,
            tokensWhenDown=options["tokens-when-store-down"],
            # The failed-login log expires with the retention, not a day.
            failuresKept=options.throttle.kept,
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
        faces = {options["requester-name"]}
        if options["http"] is not None:
            faces.add(httpRequesterName(options))
        metrics, store = serveMetrics(
            _reactor(),
            options["metrics"],
            store,
            top,
            options["name"],
            requesters=names(options["requesters"]) | faces,
        )
    quota = None
    if options["max-per-avatar"] is not None or options["seat-pool"] is not None:
        quota = Quota(
            options["max-per-avatar"],
            options["seat-pool"],
            options["seats"],
            options["seats-per-avatar"],
        )
    # One pool for every slow hash: password files, and the PBKDF2 of the
    # HTTP face's Basic and form logins against SCRAM verifiers.
    hashes = HashPool(_reactor(), options["hash-threads"], options["hash-queue"])
    try:
        bouncer = _bouncer(options, store, quota, metrics, hashes)
    except ValueError as e:
        raise StartupError(f"cannot make the bouncer: {e}") from None
    if bouncer.lease is not None:
        # Before the bouncer: its first renewal releases the dead runs'.
        own = {options["requester-name"]}
        if options["http"] is not None:
            own.add(httpRequesterName(options))
        LeaseRecord(RunLeases.of(options.dataDir), bouncer.lease, own).setServiceParent(
            top
        )
    bouncer.setServiceParent(top)
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
        realm,
        granter,
        names(options["services"]),
        options["requester-name"],
        ticketsAudienceName(options),
    )
    root = KeycardRoot(
        bouncer,
        Portal(sessions),
        requesterName=options["requester-name"],
        heartbeat=options["heartbeat"] or None,
    )
    # One budget of connections not logged in for both faces: neither can
    # starve the other of the process's file descriptors.
    budget = ConnectionBudget(options.limits, _reactor())
    factory = KeycardServerFactory(
        root, limits=options.limits, clock=_reactor(), budget=budget
    )
    for endpoint, listen in zip(endpoints, listens, strict=True):
        Listener(endpoint, factory, listen, options["name"]).setServiceParent(top)
    if options["http"] is not None:
        serveHTTP(
            _reactor(),
            options["http"],
            bouncer,
            httpRequesterName(options),
            options.proxies,
            top,
            options["name"],
            options.siteLimits,
            budget,
        )
    if daemonizing(options):
        checkEarly(top, dropsPrivileges(options))
    return top


def _bouncer(
    options: Options, store: Any, quota: Quota | None, metrics: Any, hashes: HashPool
) -> Bouncer:
    checkers = list(options["credCheckers"])
    if options["http"] is not None:
        checkers.extend(passwordCheckers(checkers, hashes))
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
        seatQueue=options.seatQueue,
        policy=options.policy,
        throttle=None if options["no-throttle"] else options.throttle,
        upkeep=options.upkeep,
        metrics=metrics,
    )


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor
