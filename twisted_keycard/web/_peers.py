"""
Who sent a request, as the guard records it in keycards: the HTTP peer's
address, or behind proxies the guard was told to trust, the client address
they forward.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

import attrs
from twisted.web.iweb import IRequest

from twisted_keycard.keycard._address import normalizeAddress
from twisted_keycard.keycard._keycard import ADDRESS_LENGTH

#: Addresses at most read from C{X-Forwarded-For}, from the right.
MAX_FORWARDED = 16

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(cidrs: Iterable[str]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


@attrs.frozen
class ProxyTrust:
    """
    The reverse proxies whose forwarding headers the guard believes.  By
    default none: the client address is the TCP peer's, and
    C{X-Forwarded-For} and C{X-Forwarded-Proto} are ignored, since any
    client can send them.

    From a trusted peer, the client address is the right-most address in
    C{X-Forwarded-For} that is not itself a trusted proxy, and the request
    counts as made over TLS when the last C{X-Forwarded-Proto} says
    C{https}.

    @ivar networks: the proxies' networks, as CIDR strings (IPv4 or IPv6).
    """

    networks: Sequence[str] = ()
    _parsed: tuple[_Network, ...] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        """
        @raise ValueError: for a network that is not CIDR.
        """
        object.__setattr__(self, "_parsed", _networks(self.networks))

    def trusts(self, address: str | None) -> bool:
        """
        Whether C{address} is one of the trusted proxies.
        """
        if address is None or not self._parsed:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._parsed)

    def clientAddress(self, request: IRequest) -> str | None:
        """
        The normalized client address of C{request}, at most
        L{ADDRESS_LENGTH} characters (see L{normalizeAddress}).
        """
        peer = _peerHost(request)
        if peer is None or not self.trusts(peer):
            return peer
        forwarded = _headerList(request, b"x-forwarded-for")[-MAX_FORWARDED:]
        address = peer
        for hop in reversed(forwarded):
            try:
                hopAddress = normalizeAddress(str(ipaddress.ip_address(hop)))
            except ValueError:
                break
            address = hopAddress
            if not self.trusts(hopAddress):
                break
        return address[:ADDRESS_LENGTH]

    def isSecure(self, request: IRequest) -> bool:
        """
        Whether C{request} came over TLS: to this server, or to a trusted
        proxy that says so.
        """
        if request.isSecure():
            return True
        if not self.trusts(_peerHost(request)):
            return False
        protos = _headerList(request, b"x-forwarded-proto")
        return bool(protos) and protos[-1].lower() == "https"


def _peerHost(request: IRequest) -> str | None:
    peer = request.getClientAddress()
    host = getattr(peer, "host", None)
    if isinstance(host, str):
        return normalizeAddress(host)[:ADDRESS_LENGTH]
    return None


def _headerList(request: IRequest, name: bytes) -> list[str]:
    """
    The comma-separated items of every C{name} header, in order.
    """
    items: list[str] = []
    for raw in request.requestHeaders.getRawHeaders(name, []):
        text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
        items.extend(item.strip() for item in text.split(",") if item.strip())
    return items
