"""
Composite policies: a boolean expression over named algorithms, evaluated
for every keycard a bouncer is about to issue, and again for the keycards it
holds when an algorithm revokes some of them, so that a keycard expires only
if the whole expression turns false.

The algorithms are the keycard kinds (C{scram}, C{token}, C{hmac}: true
when the keycard is of that kind, and so passed that exchange) and address
rules (C{address}: the policy's allow and deny lists; C{address:CIDR}: the
client address is in that network).  IPv4 and IPv6 both work.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Mapping

import attrs

from twisted_keycard.bouncer._expression import Expression, ExpressionError, Name, parse
from twisted_keycard.keycard._address import normalizeAddress
from twisted_keycard.store._records import IssuedKeycard

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

KINDS = {
    "scram": "twisted_keycard.scram-sha-256",
    "token": "twisted_keycard.token",
    "hmac": "twisted_keycard.hmac-sha256",
    "sshkeys": "twisted_keycard.ssh-signature",
    "htpasswd": "twisted_keycard.password",
    "srp": "twisted_keycard.srp-6a",
}


def networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """
    @raise ValueError: for a string that is not a network.
    """
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def within(address: str | None, nets: Iterable[Network]) -> bool:
    """
    Whether C{address} is in any of C{nets}; an unknown or malformed
    address is in none.
    """
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(normalizeAddress(address))
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in nets)


@attrs.frozen
class AddressRule:
    """
    The C{address} algorithm: true for an address in C{allow} (or any
    address if C{allow} is empty) and not in C{deny}.
    """

    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()

    @classmethod
    def fromStrings(
        cls, allow: Iterable[str] = (), deny: Iterable[str] = ()
    ) -> AddressRule:
        return cls(networks(allow), networks(deny))

    def __call__(self, address: str | None) -> bool:
        allowed = not self.allow or within(address, self.allow)
        return allowed and not within(address, self.deny)


@attrs.define
class CompositePolicy:
    """
    A policy for L{twisted_keycard.Bouncer}: C{policy=CompositePolicy(
    "scram and address", address=AddressRule.fromStrings(["10.0.0.0/8"]))}.

    @raise ExpressionError: if the expression does not parse or names an
        algorithm that does not exist.
    """

    text: str
    address: AddressRule = attrs.field(factory=AddressRule)
    kinds: Mapping[str, str] = attrs.field(factory=lambda: dict(KINDS))
    expression: Expression = attrs.field(init=False)
    _cidrs: dict[str, tuple[Network, ...]] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        self.expression = parse(self.text)
        for name in self.expression.names():
            self._check(name)

    def _check(self, name: Name) -> None:
        position = self.text.find(name.name)
        if name.name == "address":
            if name.argument is not None:
                try:
                    self._cidrs[name.argument] = networks([name.argument])
                except ValueError:
                    raise ExpressionError(
                        f"{name.argument!r} is not a network", self.text, position
                    ) from None
            return
        if name.name not in self.kinds:
            known = ", ".join([*self.kinds, "address"])
            raise ExpressionError(
                f"unknown algorithm {name.name!r} (known: {known})", self.text, position
            )
        if name.argument is not None:
            raise ExpressionError(
                f"{name.name!r} takes no argument", self.text, position
            )

    def allows(self, record: IssuedKeycard, revoked: Collection[str] = ()) -> bool:
        """
        Evaluate the expression for an issued keycard; the algorithms named
        in C{revoked} count as false.
        """

        def atom(name: Name) -> bool:
            if name.name in revoked:
                return False
            if name.name == "address":
                if name.argument is None:
                    return self.address(record.address)
                return within(record.address, self._cidrs[name.argument])
            return record.keycardType == self.kinds[name.name]

        return self.expression.evaluate(atom)
