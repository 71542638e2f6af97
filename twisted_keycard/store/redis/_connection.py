"""
The connections of a Redis store: a small pool for commands and scripts,
and one subscriber to the store's channel, each reconnected with backoff
by txredisapi.  A command sent during an outage fails at once with
L{StoreUnavailable}, rather than waiting for Redis to come back; one sent
before the first connection waits for it (a few seconds at most).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any

import txredisapi
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    fail,
    gatherResults,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure

from twisted_keycard.error import KeycardError
from twisted_keycard.store.redis._endpoints import (
    CONNECT_TIMEOUT,
    SentinelEndpoint,
    endpointTo,
)
from twisted_keycard.store.redis._factories import Pool, SentinelPool, Subscriber
from twisted_keycard.store.redis._url import RedisURL

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
            factory = SentinelPool(
                onSize,
                sentinel_manager=self._sentinel,
                service_name=self.url.master,
                is_master=True,
                uuid=None,
                dbid=db,
                poolsize=size,
                isLazy=True,
                **options,
            )
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
