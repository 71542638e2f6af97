"""
Tests for L{twisted_keycard.bouncer._composite} and
L{twisted_keycard.bouncer._composite}:
parsing with Python's precedence, short-circuit, errors that point at the
position, address rules (IPv4 and IPv6), and re-evaluation in a bouncer.
"""

from __future__ import annotations

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import Bouncer, KeycardRefused
from twisted_keycard.bouncer._composite import (
    KINDS,
    AddressRule,
    And,
    CompositePolicy,
    ExpressionError,
    Name,
    Not,
    Or,
    parse,
)
from twisted_keycard.keycard._keycard import Keycard
from twisted_keycard.store import IssuedKeycard

from ._passphrase import PassphraseAnswerer, PassphraseChecker, PassphraseKeycard


def record(keycardType: str, address: str | None) -> IssuedKeycard:
    return IssuedKeycard("k", "alice", "r", "b", keycardType, address, 0.0, 60.0, 60.0)


class ParseTests(SynchronousTestCase):
    def test_precedence(self) -> None:
        """
        not binds tighter than and, and tighter than or.
        """
        a, b, c = Name("a"), Name("b"), Name("c")
        self.assertEqual(parse("a or b and c"), Or(a, And(b, c)))
        self.assertEqual(parse("a and b or c"), Or(And(a, b), c))
        self.assertEqual(parse("not a and b"), And(Not(a), b))
        self.assertEqual(parse("not (a and b)"), Not(And(a, b)))
        self.assertEqual(parse("a or b or c"), Or(Or(a, b), c))
        self.assertEqual(parse("not not a"), Not(Not(a)))

    def test_arguments(self) -> None:
        self.assertEqual(
            parse("token or (hmac and not address:10.0.0.0/8)"),
            Or(Name("token"), And(Name("hmac"), Not(Name("address", "10.0.0.0/8")))),
        )
        self.assertEqual(
            parse("address:2001:db8::/32"), Name("address", "2001:db8::/32")
        )

    def test_shortCircuit(self) -> None:
        seen: list[str] = []

        def atom(name: Name) -> bool:
            seen.append(name.name)
            return name.name == "a"

        self.assertTrue(parse("a or b").evaluate(atom))
        self.assertEqual(seen, ["a"])
        seen.clear()
        self.assertFalse(parse("b and a").evaluate(atom))
        self.assertEqual(seen, ["b"])

    def test_errors(self) -> None:
        for text, position, message in [
            ("a and", 5, "expected a name"),
            ("a or or b", 5, "found 'or'"),
            ("(a and b", 8, "expected ')'"),
            ("a b", 2, "expected 'and', 'or' or the end"),
            ("a and )", 6, "found ')'"),
            ("", 0, "found the end"),
            ("a & b", 2, "unexpected '&'"),
        ]:
            error = self.assertRaises(ExpressionError, parse, text)
            self.assertEqual(error.position, position, text)
            self.assertIn(message, str(error))
            self.assertIn(" " * position + "^", str(error))

    def test_deepNesting(self) -> None:
        self.assertRaises(ExpressionError, parse, "(" * 100 + "a" + ")" * 100)


class PolicyTests(SynchronousTestCase):
    def test_kinds(self) -> None:
        policy = CompositePolicy("scram or token")
        self.assertTrue(policy.allows(record(KINDS["scram"], None)))
        self.assertFalse(policy.allows(record(KINDS["hmac"], None)))

    def test_address(self) -> None:
        rule = AddressRule.fromStrings(["10.0.0.0/8", "2001:db8::/32"], ["10.6.0.0/16"])
        policy = CompositePolicy("scram and address", address=rule)
        scram = KINDS["scram"]
        self.assertTrue(policy.allows(record(scram, "10.1.2.3")))
        self.assertTrue(policy.allows(record(scram, "2001:db8::1")))
        self.assertFalse(policy.allows(record(scram, "10.6.0.1")))
        self.assertFalse(policy.allows(record(scram, "192.0.2.1")))
        self.assertFalse(policy.allows(record(scram, None)))
        self.assertFalse(policy.allows(record(scram, "not an address")))

    def test_inlineNetwork(self) -> None:
        policy = CompositePolicy("token or (hmac and not address:10.0.0.0/8)")
        self.assertTrue(policy.allows(record(KINDS["token"], "10.0.0.1")))
        self.assertTrue(policy.allows(record(KINDS["hmac"], "192.0.2.1")))
        self.assertFalse(policy.allows(record(KINDS["hmac"], "10.0.0.1")))
        self.assertTrue(policy.allows(record(KINDS["hmac"], "::1")))

    def test_unknownAlgorithm(self) -> None:
        error = self.assertRaises(ExpressionError, CompositePolicy, "scram and ldap")
        self.assertIn("unknown algorithm 'ldap'", str(error))
        self.assertEqual(error.position, 10)
        self.assertRaises(ExpressionError, CompositePolicy, "address:10.0.0.0/33")
        self.assertRaises(ExpressionError, CompositePolicy, "scram:x")

    def test_revokedAlgorithm(self) -> None:
        policy = CompositePolicy(
            "token or address", address=AddressRule.fromStrings(["10.0.0.0/8"])
        )
        token = record(KINDS["token"], "192.0.2.1")
        self.assertFalse(policy.allows(token, ["token"]))
        self.assertTrue(policy.allows(token, ["address"]))


PASSPHRASE = "twisted_keycard.tests.passphrase"


class BouncerPolicyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        policy = CompositePolicy(
            "passphrase and address",
            address=AddressRule.fromStrings(["10.0.0.0/8"]),
            kinds={**KINDS, "passphrase": PASSPHRASE},
        )
        self.bouncer = Bouncer(
            [PassphraseChecker({"alice": "pw"})], clock=self.clock, policy=policy
        )
        self.expired: list[str] = []

        @attrs.define
        class Requester:
            outer: BouncerPolicyTests

            def keycardIds(self) -> list[str]:
                return []

            def expireKeycardIds(self, keycardIds: list[str]) -> None:
                self.outer.expired.extend(keycardIds)

        self.bouncer.registerRequester("r", Requester(self))  # type: ignore[arg-type]

    def login(self, address: str) -> Deferred[Keycard]:
        first = PassphraseKeycard(username="alice", address=address, requesterName="r")
        challenged = self.successResultOf(self.bouncer.authenticate(first))
        answered = PassphraseAnswerer("alice", "pw").answer(challenged)
        return self.bouncer.authenticate(answered)

    def test_refusedByPolicy(self) -> None:
        self.successResultOf(self.login("10.0.0.1"))
        self.failureResultOf(self.login("192.0.2.1"), KeycardRefused)

    def test_reevaluate(self) -> None:
        """
        When the address algorithm revokes a keycard, the expression turns
        false for it, and it expires; a rule change re-evaluates them all.
        """
        one = self.successResultOf(self.login("10.0.0.1"))
        two = self.successResultOf(self.login("10.0.0.2"))
        assert one.id is not None and two.id is not None
        count = self.successResultOf(self.bouncer.reevaluate({"address": [one.id]}))
        self.assertEqual((count, self.expired), (1, [one.id]))
        assert self.bouncer.policy is not None
        self.bouncer.policy.address = AddressRule.fromStrings(
            ["10.0.0.0/8"], ["10.0.0.2/32"]
        )
        self.successResultOf(self.bouncer.reevaluate())
        self.assertEqual(self.expired, [one.id, two.id])
