"""
Where the connections of a Redis store go: one server over TCP or TLS (its
certificate verified), or the primary that Sentinels name, asked again at
every attempt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import ssl
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from zope.interface import implementer

from twisted_keycard.store.redis._url import RedisURL

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
