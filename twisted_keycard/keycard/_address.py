"""
Client addresses as keycards carry them: one text form per host, so that
rules, limits and tokens compare like with like.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

#: The prefix length that groups IPv6 addresses as one client (a site's
#: /64 is one subscriber's, as one IPv4 address is).
IPV6_GROUP = 64

#: Addresses whose forms are remembered: a client's address is read at
#: every message, and parsing it is most of the cost.
CACHED = 4096


@lru_cache(maxsize=CACHED)
def normalizeAddress(host: str) -> str:
    """
    The canonical text of an IP address: an IPv4-mapped IPv6 address (as a
    dual-stack listener sees an IPv4 peer, C{::ffff:192.0.2.1}) becomes the
    IPv4 address, and IPv6 is compressed and lower case.  Text that is not
    an IP address is returned as it is.
    """
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


@lru_cache(maxsize=CACHED)
def addressGroup(address: str | None) -> str | None:
    """
    The group a client address is counted in for per-address limits: the
    IPv4 address itself, or the /64 an IPv6 address is in (an IPv6 client
    usually has a whole /64 to pick addresses from).
    """
    if address is None:
        return None
    normal = normalizeAddress(address)
    try:
        ip = ipaddress.ip_address(normal)
    except ValueError:
        return normal
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/{IPV6_GROUP}", strict=False))
    return normal
