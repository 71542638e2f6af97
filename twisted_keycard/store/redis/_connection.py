"""
The connections of a Redis store: where they go (a server over TCP or TLS,
or the master that Sentinel names, from a C{redis://}, C{rediss://} or
C{redis+sentinel://} URL), txredisapi's factories, a small pool for
commands and scripts, fail fast during an outage and reconnect with
backoff, and the durability settings checked at start.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

import attrs
import txredisapi
from twisted.internet import ssl
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    fail,
    gatherResults,
    succeed,
)
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_keycard.error import KeycardError
from twisted_keycard.store.redis._lua import pairsToDict


class Pool(txredisapi.RedisFactory):  # type: ignore[misc]
    """
    txredisapi's pool of connections, telling its owner how many are up.

    For the primary that Sentinels name (C{primary}), each connection asks
    its server's role first and drops a replica (after a failover), as
    txredisapi's C{SentinelConnectionFactory} does, and the first retry
    after a lost connection comes at once: the endpoint asks the Sentinels
    again, and a new address is the likely reason it was lost.

    @ivar is_master: whether the connections must reach a primary
        (txredisapi's C{SentinelRedisProtocol} reads it).
    """

    def __init__(
        self, onSize: Callable[[int], None], *a: Any, primary: bool = False, **kw: Any
    ) -> None:
        super().__init__(*a, **kw)
        self.onSize = onSize
        self.is_master = primary
        if primary:
            self.protocol = txredisapi.SentinelRedisProtocol

    def retryDelay(self, attempt: int) -> float:
        if self.is_master and attempt <= 1:
            return 0.0
        delay: float = super().retryDelay(attempt)
        return delay

    def addConnection(self, conn: Any) -> None:
        super().addConnection(conn)
        self.onSize(self.size)

    def stopTrying(self) -> Deferred[None]:
        # txredisapi gives up after a failed AUTH or SELECT, even one cut
        # short by a restarting server: keep trying, with backoff.
        return succeed(None)

    def connectionError(self, why: str) -> None:
        super().connectionError(why)
        self.onError(why)

    def delConnection(self, conn: Any) -> None:
        super().delConnection(conn)
        self.onSize(self.size)


class Subscriber(txredisapi.SubscriberProtocol):  # type: ignore[misc]
    """
    Subscribes to the store's channel once connected (and authenticated),
    and hands each message, and each new subscription, to the factory's
    C{onMessage}.
    """

    def connectionMade(self) -> Deferred[Any]:
        d: Deferred[Any] = super().connectionMade()

        def subscribe(_: object) -> Any:
            if not self._ready:
                return None
            done = self.subscribe(self.factory.channel)
            return done.addCallback(lambda _: self.factory.subscribed(self))

        def lost(failure: Failure) -> None:
            # Lost before it was subscribed: the next connection subscribes.
            failure.trap(txredisapi.ConnectionError)

        return d.addCallback(subscribe).addErrback(lost)

    def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
        self.factory.onMessage(message)


DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
DEFAULT_PREFIX = "keycard:"
SCHEMES = ("redis", "rediss", "redis+sentinel", "rediss+sentinel")

_PREFIX = re.compile(r"[A-Za-z0-9_.:{}-]{0,64}\Z")
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::([0-9]{1,5}))?\Z")


@attrs.frozen
class RedisURL:
    """
    Where a Redis store lives.

    @ivar hosts: the server's C{(host, port)}, or the Sentinels' when
        C{master} is set.
    @ivar db: the database number.
    @ivar tls: connect to the server with TLS, its certificate verified.
    @ivar caFile: PEM trust roots for TLS; the system's when C{None}.
    @ivar prefix: put before every key, so that several deployments share
        one Redis.
    @ivar master: the Sentinel service name of the primary, for
        C{redis+sentinel}.
    @ivar replicas: replicas that must hold a revocation (C{WAIT}) before
        it is acknowledged.
    @ivar replicaTimeout: seconds to wait for them.
    """

    hosts: tuple[tuple[str, int], ...]
    db: int = 0
    tls: bool = False
    caFile: str | None = None
    prefix: str = DEFAULT_PREFIX
    master: str | None = None
    replicas: int = 0
    replicaTimeout: float = 1.0

    @property
    def channel(self) -> str:
        """
        The pub/sub channel of this store's changes (channels are shared by
        every database of a server, so it names the database too).
        """
        return f"{self.prefix}changes@{self.db}"

    def __str__(self) -> str:
        hosts = ",".join(
            f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.hosts
        )
        scheme = "rediss" if self.tls else "redis"
        if self.master is not None:
            return f"{scheme}+sentinel://{hosts}/{self.master}/{self.db}"
        return f"{scheme}://{hosts}/{self.db}"


def isRedisURL(text: str) -> bool:
    """
    Whether C{text} names a Redis store (by its scheme).
    """
    return text.partition("://")[0].lower() in SCHEMES and "://" in text


def parseRedisURL(text: str) -> RedisURL:
    """
    Read a Redis store URL.

    @raise ValueError: with a one-line reason, for a malformed URL or one
        that holds a password.
    """
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"not a Redis URL: use one of {', '.join(SCHEMES)}")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    if "@" in netloc:
        raise ValueError(
            "a Redis URL takes no user or password: give the password in a"
            " file (--store-password-file) or in $KEYCARD_REDIS_PASSWORD"
        )
    sentinel = scheme.endswith("+sentinel")
    port = DEFAULT_SENTINEL_PORT if sentinel else DEFAULT_PORT
    hosts = tuple(_host(part, port) for part in netloc.split(","))
    if not sentinel and len(hosts) != 1:
        raise ValueError(
            "redis:// takes one host; list Sentinels with redis+sentinel://"
        )
    parts = [unquote(p) for p in path.split("/") if p]
    master = None
    if sentinel:
        if not parts:
            raise ValueError("redis+sentinel:// needs the master's name: .../MASTER/DB")
        master = parts.pop(0)
    if len(parts) > 1:
        raise ValueError(f"unexpected path in Redis URL: /{path}")
    db = _integer(parts[0], "database number") if parts else 0
    options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    known = {"prefix", "ca", "replicas", "replica-timeout"}
    unknown = sorted(set(options) - known)
    if unknown:
        names = ", ".join(sorted(known))
        raise ValueError(f"unknown Redis URL option {unknown[0]!r}; known: {names}")
    prefix = options.get("prefix", DEFAULT_PREFIX)
    if not _PREFIX.match(prefix):
        raise ValueError("prefix= takes up to 64 letters, digits and _.:{}-")
    caFile = options.get("ca") or None
    tls = scheme.startswith("rediss")
    if caFile is not None and not tls:
        raise ValueError("ca= is for TLS: use rediss://")
    timeout = options.get("replica-timeout", "1")
    try:
        replicaTimeout = float(timeout)
    except ValueError:
        replicaTimeout = math.nan
    if not (math.isfinite(replicaTimeout) and replicaTimeout > 0):
        raise ValueError("replica-timeout= takes a positive number of seconds")
    return RedisURL(
        hosts=hosts,
        db=db,
        tls=tls,
        caFile=caFile,
        prefix=prefix,
        master=master,
        replicas=_integer(options.get("replicas", "0"), "replicas="),
        replicaTimeout=replicaTimeout,
    )


def _host(text: str, port: int) -> tuple[str, int]:
    match = _HOST.match(text)
    if match is None:
        raise ValueError(f"bad host in Redis URL: {text!r}")
    host, given = match.groups()
    if given is not None:
        port = int(given)
        if not 0 < port < 65536:
            raise ValueError(f"bad port in Redis URL: {text!r}")
    return host.strip("[]"), port


def _integer(text: str, what: str) -> int:
    if not text.isdigit() or len(text) > 6:
        raise ValueError(f"bad {what} in Redis URL: {text!r}")
    return int(text)


#: Seconds to wait for a connection to be made.
CONNECT_TIMEOUT = 5.0


def trustRoot(caFile: str | None) -> Any:
    """
    The trust roots of a TLS connection to Redis: the certificates of a
    PEM file, or the system's.
    """
    if caFile is None:
        return ssl.platformTrust()
    text = Path(caFile).read_bytes()
    marker = b"-----END CERTIFICATE-----"
    certificates = [
        ssl.Certificate.loadPEM(part + marker)
        for part in text.split(marker)
        if b"-----BEGIN CERTIFICATE-----" in part
    ]
    if not certificates:
        raise ValueError(f"{caFile} holds no PEM certificate")
    return ssl.trustRootFromCertificates(certificates)


def endpointTo(
    reactor: Any, url: RedisURL, host: str, port: int
) -> IStreamClientEndpoint:
    """
    A client endpoint to one Redis server of C{url}: TCP, or TLS with the
    server's certificate checked against C{url.caFile} and C{host}.  An
    address is connected to as it is; a name is resolved at each attempt.
    """
    endpoint: IStreamClientEndpoint
    if isIPAddress(host):
        endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=CONNECT_TIMEOUT)
    elif isIPv6Address(host):
        endpoint = TCP6ClientEndpoint(reactor, host, port, timeout=CONNECT_TIMEOUT)
    else:
        endpoint = HostnameEndpoint(reactor, host, port, timeout=CONNECT_TIMEOUT)
    if url.tls:
        options = ssl.optionsForClientTLS(host, trustRoot(url.caFile))
        endpoint = wrapClientTLS(options, endpoint)
    return endpoint


@implementer(IStreamClientEndpoint)
class SentinelEndpoint:
    """
    Connects to the primary that the Sentinels name, asked again at every
    attempt, so that a reconnection after a failover reaches the new one.
    """

    def __init__(self, reactor: Any, url: RedisURL, sentinel: Any) -> None:
        self.reactor = reactor
        self.url = url
        self.sentinel = sentinel

    def connect(self, factory: Any) -> Deferred[Any]:
        d: Deferred[Any] = self.sentinel.discover_master(self.url.master)
        return d.addCallback(
            lambda address: endpointTo(
                self.reactor, self.url, address[0], int(address[1])
            ).connect(factory)
        )


#: Seconds to wait for a reply before the connection is dropped.
REPLY_TIMEOUT = 5.0
#: Entries a flushing script removes at most, so that Redis never stalls.
FLUSH_BATCH = 1000
#: Seconds to wait for a Sentinel to name a primary that is up.
SENTINEL_TIMEOUT = 2.0
#: Backoff between reconnection attempts: first and longest, in seconds.
FIRST_DELAY = 0.1
MAX_DELAY = 5.0


class StoreUnavailable(KeycardError):
    """
    Raised (as a failure) when the store cannot be reached: no connection
    is up, or it was lost before the reply came.
    """


class Script:
    """
    A Lua script, run with C{EVALSHA} (and loaded once per connection).
    """

    def __init__(self, source: str) -> None:
        self.source = source.encode("utf-8")
        self.sha = hashlib.sha1(self.source).hexdigest()  # noqa: S324 - Redis's name


class RedisConnection:
    """
    The connections to the Redis of a L{RedisURL}.

    @ivar up: whether a command connection is up.
    @ivar listening: whether the subscription to the store's channel is in
        place.
    """

    def __init__(
        self,
        url: RedisURL,
        password: str | None,
        reactor: Any,
        onChange: Callable[[str], None] = lambda kind: None,
        onUp: Callable[[], None] = lambda: None,
        onDown: Callable[[], None] = lambda: None,
        poolSize: int = 1,
        replyTimeout: float = REPLY_TIMEOUT,
    ) -> None:
        """
        @param onChange: called with C{"revoked"} or C{"keyring"} when a
            change is published on the store's channel, and with
            C{"subscribed"} whenever the subscription is (again) in place,
            when changes may have been missed.
        @param onUp: called when the first command connection comes up,
            and again after every outage.
        @param onDown: called when the last command connection is lost.
        @param poolSize: command connections; one by default, which
            pipelines every command, so that a C{WAIT} follows the writes
            it waits for.
        """
        self.url = url
        self.up = False
        self.closed = False
        self._everUp = False
        self._reactor = reactor
        self._onUp = onUp
        self._onDown = onDown
        self._waiting: list[Deferred[None]] = []
        self._sentinel: Any = None
        options = {
            "charset": "utf-8",
            "password": password,
            "replyTimeout": replyTimeout,
            "convertNumbers": False,
        }
        self._pool = self._factory(
            reactor, self._sized, url.db, poolSize, options, txredisapi.RedisProtocol
        )
        subscriberOptions = {**options, "replyTimeout": None}
        self._subscriber = self._factory(
            reactor, lambda size: None, None, 1, subscriberOptions, Subscriber
        )
        self._subscriber.channel = url.channel
        self._subscriber.onMessage = onChange
        self._subscriber.subscribed = self._subscribed
        self.listening = False
        self._endpoints = [
            (self._pool, self._endpoint(reactor)),
            (self._subscriber, self._endpoint(reactor)),
        ]

    def _factory(
        self,
        reactor: Any,
        onSize: Callable[[int], None],
        db: int | None,
        size: int,
        options: dict[str, Any],
        protocol: type,
    ) -> Any:
        if self.url.master is None:
            factory = Pool(onSize, None, db, size, isLazy=True, **options)
        else:
            if self._sentinel is None:
                self._sentinel = txredisapi.Sentinel(list(self.url.hosts))
                # Asked again at each attempt: a failover shows sooner.
                self._sentinel.discovery_timeout = SENTINEL_TIMEOUT
            factory = Pool(onSize, None, db, size, isLazy=True, primary=True, **options)
        if protocol is not txredisapi.RedisProtocol:
            factory.protocol = protocol
        factory.initialDelay = FIRST_DELAY
        factory.maxDelay = MAX_DELAY
        # A failed first connection is reported there too; the store logs
        # its outages itself.
        factory.deferred.addErrback(lambda f: None)
        factory.onError = self._refused
        return factory

    def _endpoint(self, reactor: Any) -> IStreamClientEndpoint:
        if self.url.master is None:
            host, port = self.url.hosts[0]
            return endpointTo(reactor, self.url, host, port)
        return SentinelEndpoint(reactor, self.url, self._sentinel)

    def start(self) -> None:
        """
        Start connecting (and reconnecting, with backoff, after an outage).
        """
        for factory, endpoint in self._endpoints:
            factory.startConnecting(endpoint)

    def _refused(self, why: str) -> None:
        """
        Redis refused a connection (AUTH, SELECT): those waiting for one
        fail now, with the reason, rather than at their timeout.
        """
        reason = why.removeprefix("Redis error: ")
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if not d.called:
                d.errback(StoreUnavailable(f"the Redis store refused us: {reason}"))

    def _subscribed(self, protocol: Any) -> None:
        self.listening = True

        def lost(_: object) -> None:
            self.listening = False

        protocol.whenDisconnected().addCallback(lost)
        self._subscriber.onMessage("subscribed")

    def _sized(self, size: int) -> None:
        wasUp, self.up = self.up, size > 0
        if self.up and not wasUp:
            self._everUp = True
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                if not d.called:
                    d.callback(None)
            self._onUp()
        elif wasUp and not self.up and not self.closed:
            self._onDown()

    def whenUp(self) -> Deferred[None]:
        """
        @return: a L{Deferred} firing once a command connection is up.
        """
        if self.up:
            return Deferred.fromCoroutine(_nothing())
        d: Deferred[None] = Deferred(lambda d: self._waiting.remove(d))
        self._waiting.append(d)
        return d

    def connected(self) -> Deferred[None]:
        """
        @return: a L{Deferred} firing once a command connection is up, or
            failing with L{StoreUnavailable} when the first attempt to make
            one fails (Redis refuses the connection, or the password).
        """
        up = self.whenUp()
        if self.up:
            return up
        # The first attempt of txredisapi's pool (a ClientService).
        attempt = self._pool.slots[0].service.whenConnected(failAfterFailures=1)

        def failed(failure: Failure) -> None:
            if not up.called:
                up.errback(StoreUnavailable(failure.getErrorMessage()))

        # Not from inside the ClientService's state change: whoever waits
        # may well close the connections.
        attempt.addErrback(lambda f: self._reactor.callLater(0, failed, f))
        return up

    def execute(self, *args: object) -> Deferred[Any]:
        """
        Send one command.

        @return: a L{Deferred} firing with its reply, or failing with
            L{StoreUnavailable} when Redis cannot be reached, or with
            C{txredisapi.ResponseError} for an error reply.
        """
        if not self.up:
            if self._everUp or self.closed:
                return fail(StoreUnavailable("the Redis store is unreachable"))
            # Still connecting: a starting bouncer's first reads wait.
            waiting = self.whenUp()
            late = self._reactor.callLater(CONNECT_TIMEOUT, waiting.cancel)

            def connected(_: None) -> Deferred[Any]:
                if late.active():
                    late.cancel()
                return self.execute(*args)

            def never(failure: Failure) -> Failure:
                failure.trap(CancelledError)
                raise StoreUnavailable("the Redis store is unreachable")

            return waiting.addCallbacks(connected, never)
        d: Deferred[Any] = self._pool.handler.execute_command(*args)
        return d.addErrback(_unavailable)

    def run(self, script: Script, args: Sequence[object]) -> Deferred[Any]:
        """
        Run a script: C{EVALSHA}, and C{EVAL} where Redis does not know it
        yet (a new connection, or after a restart).
        """
        d = self.execute("EVALSHA", script.sha, 0, *args)

        def unknown(failure: Failure) -> Any:
            failure.trap(txredisapi.ResponseError)
            if not str(failure.value).startswith("NOSCRIPT"):
                return failure
            return self.execute("EVAL", script.source, 0, *args)

        return d.addErrback(unknown)

    def close(self) -> Deferred[None]:
        """
        Close every connection and stop reconnecting, once the commands
        already sent are answered (they are answered in order: a last
        C{PING} comes back after them).
        """
        return Deferred.fromCoroutine(self._close())

    async def _close(self) -> None:
        if self.up and not self.closed:
            with suppress(Exception):
                await self.execute("PING")
        self.closed = True
        stops = [factory.disconnect() for factory, _ in self._endpoints]
        if self._sentinel is not None:
            stops.append(self._sentinel.disconnect())
        for d in self._waiting:
            if not d.called:
                d.errback(StoreUnavailable("the Redis store was closed"))
        self._waiting = []
        await gatherResults(stops, consumeErrors=True)


async def _nothing() -> None:
    return None


def _unavailable(failure: Failure) -> Failure:
    if failure.check(txredisapi.ConnectionError):
        raise StoreUnavailable(
            f"the Redis store is unreachable: {failure.getErrorMessage()}"
        )
    return failure


def inBatches(flushOnce: Callable[[], Deferred[Any]]) -> Deferred[int]:
    """
    Run a flushing script until it has less than L{FLUSH_BATCH} left to
    look at.  It answers C{[removed, looked at]}, or how many it removed
    (and looked at).

    @return: a L{Deferred} firing with how many were removed in all.
    """

    async def flush() -> int:
        removed = 0
        while True:
            outcome = await flushOnce()
            done, seen = outcome if isinstance(outcome, list) else (outcome, outcome)
            removed += int(done)
            if int(seen) < FLUSH_BATCH:
                return removed

    return Deferred.fromCoroutine(flush())


#: The settings read.
NAMES = ("appendonly", "appendfsync", "maxmemory-policy")


def settingsWarnings(config: Mapping[str, str] | None) -> list[str]:
    """
    What an operator must know about a Redis server's settings, one line
    each; C{config} is C{None} when C{CONFIG GET} was refused (renamed or
    disabled, as managed services do).
    """
    if config is None:
        return [
            "could not check the Redis settings (CONFIG GET is disabled):"
            " revocations are durable only with appendonly yes and"
            " appendfsync always (or everysec: up to a second lost in a crash),"
            " and maxmemory-policy must be noeviction"
        ]
    warnings = []
    if config.get("appendonly") != "yes":
        warnings.append(
            "Redis has appendonly no: revocations written since its last"
            " snapshot are lost if it restarts; set appendonly yes"
        )
    elif config.get("appendfsync") not in ("always", "everysec"):
        warnings.append(
            f"Redis has appendfsync {config.get('appendfsync')}: revocations"
            " may be lost in a crash; set appendfsync always (or everysec)"
        )
    elif config.get("appendfsync") == "everysec":
        warnings.append(
            "Redis has appendfsync everysec: a revocation acknowledged in the"
            " last second before a crash of its host may be lost; appendfsync"
            " always loses none"
        )
    if config.get("maxmemory-policy", "noeviction") != "noeviction":
        warnings.append(
            f"Redis has maxmemory-policy {config.get('maxmemory-policy')}: it"
            " may evict revocations and seats under memory pressure; set"
            " maxmemory-policy noeviction"
        )
    return warnings


async def checkSettings(connection: RedisConnection) -> list[str]:
    """
    Read the settings L{NAMES} from the server over C{connection}: what to
    warn about them (see L{settingsWarnings}).

    @raise StoreUnavailable: if Redis is unreachable.
    """
    config: dict[str, str] = {}
    try:
        for name in NAMES:
            config.update(pairsToDict(await connection.execute("CONFIG", "GET", name)))
    except StoreUnavailable:
        raise
    except Exception:
        return settingsWarnings(None)
    return settingsWarnings(config)
