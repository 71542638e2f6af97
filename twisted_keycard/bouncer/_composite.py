"""
Composite policies: a boolean expression over named algorithms, such as
C{scram and address}, parsed and evaluated for every keycard, with address
rules by CIDR.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping

import attrs

from twisted_keycard.error import KeycardError
from twisted_keycard.keycard import normalizeAddress
from twisted_keycard.store import IssuedKeycard

_TOKEN = re.compile(r"\s*(?:(?P<paren>[()])|(?P<word>[A-Za-z0-9_.:/\-\[\]]+))")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*(?::\S+)?\Z")
KEYWORDS = ("and", "or", "not")
MAX_LENGTH = 4096
MAX_DEPTH = 64


class ExpressionError(KeycardError):
    """
    Raised for an expression that does not parse.

    @ivar position: the offset of the problem in the text.
    """

    def __init__(self, message: str, text: str, position: int) -> None:
        pointer = f"{text}\n{' ' * position}^"
        super().__init__(f"{message} at position {position}:\n{pointer}")
        self.position = position


@attrs.frozen
class Name:
    """
    A named algorithm, with its argument if any (C{address:10.0.0.0/8}).
    """

    name: str
    argument: str | None = None

    def evaluate(self, atom: Callable[[Name], bool]) -> bool:
        return atom(self)

    def names(self) -> Iterator[Name]:
        yield self


@attrs.frozen
class Not:
    operand: Expression

    def evaluate(self, atom: Callable[[Name], bool]) -> bool:
        return not self.operand.evaluate(atom)

    def names(self) -> Iterator[Name]:
        return self.operand.names()


@attrs.frozen
class And:
    left: Expression
    right: Expression

    def evaluate(self, atom: Callable[[Name], bool]) -> bool:
        return self.left.evaluate(atom) and self.right.evaluate(atom)

    def names(self) -> Iterator[Name]:
        yield from self.left.names()
        yield from self.right.names()


@attrs.frozen
class Or:
    left: Expression
    right: Expression

    def evaluate(self, atom: Callable[[Name], bool]) -> bool:
        return self.left.evaluate(atom) or self.right.evaluate(atom)

    def names(self) -> Iterator[Name]:
        yield from self.left.names()
        yield from self.right.names()


Expression = Name | Not | And | Or


def _tokens(text: str) -> list[tuple[str, int]]:
    tokens = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            offset = position + len(text[position:]) - len(text[position:].lstrip())
            raise ExpressionError(f"unexpected {text[offset]!r}", text, offset)
        value = match.group("paren") or match.group("word")
        tokens.append((value, match.start(match.lastgroup or 0)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.index = 0

    def peek(self) -> tuple[str, int] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def fail(self, expected: str) -> ExpressionError:
        token = self.peek()
        if token is None:
            return ExpressionError(
                f"expected {expected}, found the end", self.text, len(self.text)
            )
        return ExpressionError(
            f"expected {expected}, found {token[0]!r}", self.text, token[1]
        )

    def parse(self) -> Expression:
        expression = self.disjunction(0)
        if self.peek() is not None:
            raise self.fail("'and', 'or' or the end")
        return expression

    def disjunction(self, depth: int) -> Expression:
        left = self.conjunction(depth)
        while (token := self.peek()) is not None and token[0] == "or":
            self.index += 1
            left = Or(left, self.conjunction(depth))
        return left

    def conjunction(self, depth: int) -> Expression:
        left = self.negation(depth)
        while (token := self.peek()) is not None and token[0] == "and":
            self.index += 1
            left = And(left, self.negation(depth))
        return left

    def negation(self, depth: int) -> Expression:
        if depth > MAX_DEPTH:
            raise self.fail(f"at most {MAX_DEPTH} levels of nesting")
        token = self.peek()
        if token is not None and token[0] == "not":
            self.index += 1
            return Not(self.negation(depth + 1))
        return self.primary(depth)

    def primary(self, depth: int) -> Expression:
        token = self.peek()
        if token is None:
            raise self.fail("a name, 'not' or '('")
        value = token[0]
        if value == "(":
            self.index += 1
            inner = self.disjunction(depth + 1)
            closing = self.peek()
            if closing is None or closing[0] != ")":
                raise self.fail("')'")
            self.index += 1
            return inner
        if value in KEYWORDS or not _NAME.match(value):
            raise self.fail("a name, 'not' or '('")
        self.index += 1
        name, _, argument = value.partition(":")
        return Name(name, argument or None)


def parse(text: str) -> Expression:
    """
    Parse an expression.

    @raise ExpressionError: pointing at the first problem.
    """
    if len(text) > MAX_LENGTH:
        raise ExpressionError("expression too long", text[:40], 0)
    return _Parser(text).parse()


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
