"""
Tests for L{twisted_keycard.keycard._keycard}: every multi-step kind
(SCRAM, SRP, HMAC, signatures) takes challenge, answer, verify and conclude
once each, in that order, and refuses a step out of order with the same
error.  L{ExchangeLifecycleContract} runs once per kind.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard.error import ExchangeOutOfOrder, KeycardRefused, ProtocolError
from twisted_keycard.hmackeys import HMACAnswerer, HMACKeycard, HMACKeys
from twisted_keycard.keycard._keycard import (
    ExchangeLifecycle,
    ExchangeState,
    ExchangeStep,
    Keycard,
)
from twisted_keycard.scram import (
    SCRAMAnswerer,
    SCRAMExchange,
    SCRAMKeycard,
    SCRAMVerifiers,
    Verifier,
)
from twisted_keycard.srp import SRPAnswerer, SRPKeycard, SRPVerifier, SRPVerifiers
from twisted_keycard.sshkeys import SSHAnswerer, SSHKeycard, SSHKeys

if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object

KEY = secrets.token_bytes(32)
SIGNING_KEY = ed25519.Ed25519PrivateKey.generate()
SCRAM_VERIFIER = Verifier.fromPassword("secret")
SRP_VERIFIER = SRPVerifier.fromPassword("alice", "secret")


class ExchangeLifecycleContract(_Base):
    """
    The order rules every multi-step kind follows.  A test case mixing this
    in sets L{checker} and defines L{answerer}, L{malform} and
    L{serverProof}.
    """

    checker: Any

    def answerer(self, right: bool) -> Any:
        """
        @return: an answerer with the right secret, or a wrong one.
        """
        raise NotImplementedError()

    def malform(self, keycard: Keycard) -> None:
        """
        Make the answer in C{keycard} malformed.
        """
        raise NotImplementedError()

    def serverProof(self, keycard: Keycard) -> object:
        """
        @return: the field C{conclude} writes, or C{None} for a kind
            without a server proof.
        """
        raise NotImplementedError()

    def primed(self, right: bool = True) -> tuple[Keycard, Any, Any]:
        answerer = self.answerer(right)
        keycard = answerer.start()
        keycard.id, keycard.requesterName = "kid", "r1"
        exchange = self.successResultOf(self.checker.prime(keycard))
        return keycard, exchange, answerer

    def challenged(self, right: bool = True) -> tuple[Keycard, Any]:
        keycard, exchange, answerer = self.primed(right)
        self.assertIs(exchange.challenge(keycard), True)
        answerer.answer(keycard)
        return keycard, exchange

    def answered(self, right: bool = True) -> tuple[Keycard, Any]:
        keycard, exchange = self.challenged(right)
        exchange.answer(keycard)
        return keycard, exchange

    def assertOutOfOrder(self, step: str, method: Any, *args: Any) -> None:
        """
        C{method} raises exactly L{ExchangeOutOfOrder} naming C{step}.
        """
        error = self.assertRaises(ExchangeOutOfOrder, method, *args)
        self.assertIs(type(error), ExchangeOutOfOrder)
        self.assertEqual(str(error), f"{step} out of order")
        self.assertEqual(error.step, step)

    def assertSpent(self, keycard: Keycard, exchange: Any) -> None:
        self.assertIs(exchange.lifecycle.state, ExchangeState.SPENT)
        self.assertOutOfOrder("challenge", exchange.challenge, keycard)
        self.assertOutOfOrder("answer", exchange.answer, keycard)
        self.assertOutOfOrder("verify", exchange.verify)
        self.assertOutOfOrder("conclude", exchange.conclude, keycard)

    def test_inOrder(self) -> None:
        keycard, exchange = self.answered()
        self.assertIs(exchange.lifecycle.state, ExchangeState.ANSWERED)
        self.assertIs(exchange.verify(), True)
        exchange.conclude(keycard)
        self.assertIs(exchange.lifecycle.state, ExchangeState.CONCLUDED)

    def test_answerBeforeChallenge(self) -> None:
        keycard, exchange, _ = self.primed()
        self.assertOutOfOrder("answer", exchange.answer, keycard)
        self.assertSpent(keycard, exchange)

    def test_challengeTwice(self) -> None:
        keycard, exchange, _ = self.primed()
        exchange.challenge(keycard)
        self.assertOutOfOrder("challenge", exchange.challenge, keycard)
        self.assertSpent(keycard, exchange)

    def test_answerTwice(self) -> None:
        """
        An answer sent twice spends the exchange: even the right proof is
        then not checked.
        """
        keycard, exchange = self.answered()
        self.assertOutOfOrder("answer", exchange.answer, keycard)
        self.assertSpent(keycard, exchange)

    def test_malformedAnswerSpends(self) -> None:
        """
        A malformed answer spends the exchange: it cannot be answered again.
        """
        keycard, exchange, answerer = self.primed()
        exchange.challenge(keycard)
        self.malform(keycard)
        error = self.assertRaises(ProtocolError, exchange.answer, keycard)
        self.assertNotIsInstance(error, ExchangeOutOfOrder)
        answerer.answer(keycard)
        self.assertSpent(keycard, exchange)

    def test_verifyBeforeAnswer(self) -> None:
        keycard, exchange = self.challenged()
        self.assertOutOfOrder("verify", exchange.verify)
        self.assertSpent(keycard, exchange)

    def test_verifyTwice(self) -> None:
        """
        C{verify} answers C{True} once, then raises.
        """
        keycard, exchange = self.answered()
        self.assertIs(exchange.verify(), True)
        self.assertOutOfOrder("verify", exchange.verify)
        self.assertSpent(keycard, exchange)

    def test_verifyTwiceAfterFailure(self) -> None:
        """
        C{verify} answers C{False} once, then raises.
        """
        keycard, exchange = self.answered(right=False)
        self.assertIs(exchange.verify(), False)
        self.assertSpent(keycard, exchange)

    def test_checkedOnce(self) -> None:
        """
        The checker checks an exchange once, whether it succeeded or not.
        """
        for right, first in [(True, None), (False, KeycardRefused)]:
            keycard, exchange = self.answered(right)
            d = self.checker.requestAvatarId(exchange)
            if first is None:
                self.assertEqual(self.successResultOf(d), "alice")
            else:
                self.failureResultOf(d, first)
            self.assertOutOfOrder("answer", exchange.answer, keycard)
            again = self.failureResultOf(self.checker.requestAvatarId(exchange))
            self.assertIs(again.type, ExchangeOutOfOrder)
            self.assertEqual(again.getErrorMessage(), "verify out of order")

    def test_concludeBeforeVerify(self) -> None:
        keycard, exchange = self.answered()
        self.assertOutOfOrder("conclude", exchange.conclude, keycard)
        self.assertSpent(keycard, exchange)

    def test_concludeAfterFailedVerify(self) -> None:
        keycard, exchange = self.answered(right=False)
        exchange.verify()
        self.assertOutOfOrder("conclude", exchange.conclude, keycard)
        self.assertIsNone(self.serverProof(keycard))

    def test_concludeTwice(self) -> None:
        keycard, exchange = self.answered()
        exchange.verify()
        exchange.conclude(keycard)
        self.assertOutOfOrder("conclude", exchange.conclude, keycard)
        self.assertSpent(keycard, exchange)


class SCRAMLifecycleTests(ExchangeLifecycleContract, SynchronousTestCase):
    checker = SCRAMVerifiers({"alice": SCRAM_VERIFIER})

    def answerer(self, right: bool) -> SCRAMAnswerer:
        return SCRAMAnswerer("alice", "secret" if right else "wrong")

    def malform(self, keycard: Keycard) -> None:
        assert isinstance(keycard, SCRAMKeycard)
        keycard.clientFinal = "nonsense"

    def serverProof(self, keycard: Keycard) -> object:
        assert isinstance(keycard, SCRAMKeycard)
        return keycard.serverFinal


class SRPLifecycleTests(ExchangeLifecycleContract, SynchronousTestCase):
    checker = SRPVerifiers({"alice": SRP_VERIFIER})

    def answerer(self, right: bool) -> SRPAnswerer:
        return SRPAnswerer("alice", "secret" if right else "wrong")

    def malform(self, keycard: Keycard) -> None:
        assert isinstance(keycard, SRPKeycard)
        keycard.M = "not base64!"

    def serverProof(self, keycard: Keycard) -> object:
        assert isinstance(keycard, SRPKeycard)
        return keycard.HAMK


class HMACLifecycleTests(ExchangeLifecycleContract, SynchronousTestCase):
    checker = HMACKeys({"alice": KEY})

    def answerer(self, right: bool) -> HMACAnswerer:
        return HMACAnswerer("alice", KEY if right else secrets.token_bytes(32))

    def malform(self, keycard: Keycard) -> None:
        assert isinstance(keycard, HMACKeycard)
        keycard.mac = None

    def serverProof(self, keycard: Keycard) -> object:
        return None


class SSHLifecycleTests(ExchangeLifecycleContract, SynchronousTestCase):
    checker = SSHKeys({"alice": [SIGNING_KEY.public_key()]})

    def answerer(self, right: bool) -> SSHAnswerer:
        key = SIGNING_KEY if right else ed25519.Ed25519PrivateKey.generate()
        return SSHAnswerer("alice", key)

    def malform(self, keycard: Keycard) -> None:
        assert isinstance(keycard, SSHKeycard)
        keycard.signature = "not base64!"

    def serverProof(self, keycard: Keycard) -> object:
        return None


class ExchangeLifecycleTests(SynchronousTestCase):
    """
    The guard itself.
    """

    def test_verifyOnlyThroughVerify(self) -> None:
        """
        The verify step is not a plain step: a check that returns C{False}
        would otherwise let the exchange be concluded.
        """
        lifecycle = ExchangeLifecycle(ExchangeState.ANSWERED)
        with self.assertRaises(ValueError), lifecycle.step(ExchangeStep.VERIFY):
            pass
        self.assertIs(lifecycle.state, ExchangeState.ANSWERED)

    def test_stepThatRaisesSpends(self) -> None:
        lifecycle = ExchangeLifecycle()
        with self.assertRaises(ProtocolError), lifecycle.step(ExchangeStep.CHALLENGE):
            raise ProtocolError("bad")
        self.assertIs(lifecycle.state, ExchangeState.SPENT)

    def test_scramExchangeStateKept(self) -> None:
        """
        C{twisted_keycard.scram.ExchangeState} is still importable, and a
        SCRAM exchange still says its C{state}.
        """
        from twisted_keycard.scram import ExchangeState as SCRAMExchangeState

        self.assertIs(SCRAMExchangeState, ExchangeState)
        answerer = SCRAMAnswerer("alice", "secret")
        keycard = answerer.start()
        checker = SCRAMVerifiers({"alice": SCRAM_VERIFIER})
        exchange = self.successResultOf(checker.prime(keycard))
        assert isinstance(exchange, SCRAMExchange)
        self.assertIs(exchange.state, ExchangeState.PRIMED)
