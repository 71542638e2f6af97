"""
The C{from="..."} patterns of an C{authorized_keys} line, matched as
OpenSSH matches them against a client's IP address: comma-separated
addresses, networks (CIDR) and C{*}/C{?} wildcards over an address's text,
each negated by a leading C{!}.  Host names are refused: they cannot be
checked without DNS.
"""

from __future__ import annotations

import ipaddress
import re

import attrs

from twisted_keycard.keycard._address import normalizeAddress

_IPV4_GLOB = re.compile(r"[0-9.*?]+")
_IPV6_GLOB = re.compile(r"[0-9a-fA-F.:*?]*:[0-9a-fA-F.:*?]*")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@attrs.frozen
class AddressPattern:
    """
    One pattern of a C{from=} list: a network (an address is a network of
    one), or a C{*}/C{?} wildcard over an address's text.
    """

    negated: bool
    network: Network | None = None
    glob: re.Pattern[str] | None = None

    @classmethod
    def parse(cls, text: str) -> AddressPattern:
        """
        @raise ValueError: for a host name (it cannot be checked without
            DNS), a network with host bits set, or anything else.
        """
        negated = text.startswith("!")
        pattern = text[1:] if negated else text
        if not pattern:
            raise ValueError("from= has an empty pattern")
        if "*" in pattern or "?" in pattern:
            if not (_IPV4_GLOB.fullmatch(pattern) or _IPV6_GLOB.fullmatch(pattern)):
                raise _hostName(pattern)
            regex = "".join(
                {"*": ".*", "?": "."}.get(c, re.escape(c)) for c in pattern.lower()
            )
            return cls(negated, glob=re.compile(regex))
        try:
            return cls(negated, network=ipaddress.ip_network(pattern))
        except ValueError:
            pass
        try:
            ipaddress.ip_network(pattern, strict=False)
        except ValueError:
            raise _hostName(pattern) from None
        raise ValueError(f"from= network {pattern!r} has host bits set")

    def matches(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if self.network is not None:
            return ip.version == self.network.version and ip in self.network
        assert self.glob is not None
        return self.glob.fullmatch(str(ip)) is not None


def _hostName(pattern: str) -> ValueError:
    return ValueError(
        f"from= pattern {pattern!r} is not an address or network"
        " (host names cannot be checked without DNS)"
    )


@attrs.frozen
class AddressPatterns:
    """
    A C{from=} list, matched as OpenSSH does: an address matches when a
    pattern matches it and no negated (C{!}) pattern does.  Only IP
    addresses are matched; a client without one matches nothing.
    """

    patterns: tuple[AddressPattern, ...]

    @classmethod
    def parse(cls, text: str) -> AddressPatterns:
        """
        @raise ValueError: for a pattern that is not taken (see
            L{AddressPattern.parse}).
        """
        return cls(tuple(AddressPattern.parse(p.strip()) for p in text.split(",")))

    def matches(self, address: str | None) -> bool:
        if address is None:
            return False
        try:
            ip = ipaddress.ip_address(normalizeAddress(address))
        except ValueError:
            return False
        found = [p.negated for p in self.patterns if p.matches(ip)]
        return bool(found) and not any(found)
