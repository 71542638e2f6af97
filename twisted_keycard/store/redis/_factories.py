"""
txredisapi's connection factories, as a Redis store uses them: a pool
that tells its owner how many connections are up and never gives up
reconnecting, and a subscriber to the store's channel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import txredisapi
from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure


class Pool(txredisapi.RedisFactory):  # type: ignore[misc]
    """
    txredisapi's pool of connections, telling its owner how many are up.
    """

    def __init__(self, onSize: Callable[[int], None], *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.onSize = onSize

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


class SentinelPool(Pool, txredisapi.SentinelConnectionFactory):  # type: ignore[misc]
    """
    The same, for the primary that Sentinels name (a connection that finds
    a replica there, after a failover, is dropped and made again).
    """


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
