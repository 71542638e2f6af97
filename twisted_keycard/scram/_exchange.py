"""
One SCRAM-SHA-256 exchange on the bouncer's side: what it sent, kept on
its side, and the single check of the client's proof.
"""

from __future__ import annotations

import hmac

import attrs
from zope.interface import implementer

from twisted_keycard.error import ProtocolError
from twisted_keycard.keycard._interfaces import IExchange
from twisted_keycard.keycard._keycard import Keycard
from twisted_keycard.keycard._lifecycle import (
    ExchangeLifecycle,
    ExchangeState,
    ExchangeStep,
)
from twisted_keycard.scram._binding import serverBinding
from twisted_keycard.scram._crypto import hmacSha256, sha256, xor
from twisted_keycard.scram._keycard import SCRAMKeycard
from twisted_keycard.scram._messages import (
    ClientFinal,
    ClientFirst,
    ServerFinal,
    ServerFirst,
    authMessage,
)
from twisted_keycard.scram._verifier import Verifier


class ISCRAMExchange(IExchange):
    """
    A SCRAM-SHA-256 exchange on the bouncer's side: the credentials a
    L{twisted_keycard.scram.SCRAMVerifiers} checks.
    """


def _scram(keycard: Keycard) -> SCRAMKeycard:
    if not isinstance(keycard, SCRAMKeycard):
        raise ProtocolError("not a SCRAM keycard")
    return keycard


@implementer(ISCRAMExchange)
@attrs.define(eq=False)
class SCRAMExchange:
    """
    Everything the bouncer sent and must compare later.  Nothing the client
    sends after its first message replaces any of it.

    @ivar first: the client's first message, as the bouncer parsed it.
    @ivar serverFirst: the challenge.
    @ivar verifier: the user's verifier, or random keys for a mock exchange.
    @ivar known: whether the user exists; a mock exchange does the same work
        and then fails.
    @ivar lifecycle: the guard that takes each step once, in order.
    """

    first: ClientFirst
    serverFirst: ServerFirst
    verifier: Verifier = attrs.field(repr=False)
    known: bool = attrs.field(repr=False)
    lifecycle: ExchangeLifecycle = attrs.field(factory=ExchangeLifecycle, init=False)
    _final: ClientFinal | None = attrs.field(default=None, repr=False)
    _serverSignature: bytes | None = attrs.field(default=None, repr=False)

    @property
    def state(self) -> ExchangeState:
        """
        Where the exchange is: an L{ExchangeState}.
        """
        return self.lifecycle.state

    @property
    def username(self) -> str:
        """
        The user name the client gave.
        """
        return self.first.username

    def challenge(self, keycard: Keycard) -> bool:
        """
        Write the server-first message into the keycard.

        @return: C{True}: the client must answer.
        """
        with self.lifecycle.step(ExchangeStep.CHALLENGE):
            _scram(keycard).serverFirst = self.serverFirst.format()
        return True

    def answer(self, keycard: Keycard) -> None:
        """
        Take the client-final message, the only field the client wrote that
        is read from the keycard; the channel binding data it must carry
        comes from the requester (C{channelBindings}), for the connection
        this message came on.

        @raise ProtocolError: if it is malformed, out of order, for another
            exchange (its nonce differs), or bound to another channel than
            the requester's (a relay in between).
        """
        with self.lifecycle.step(ExchangeStep.ANSWER):
            final = ClientFinal.parse(_scram(keycard).clientFinal)
            binding = serverBinding(self.first.gs2Header, keycard.channelBindings)
            if not hmac.compare_digest(final.channelBinding, binding):
                raise ProtocolError("channel binding does not match")
            if not hmac.compare_digest(final.nonce, self.serverFirst.nonce):
                raise ProtocolError("nonce does not match")
            self._final = final

    def verify(self) -> bool:
        """
        Check the client's proof against the stored key, once.  The same
        work is done for a mock exchange, which then fails.

        @return: whether the proof is right and the user exists.
        @raise ProtocolError: if the exchange is not answered, or was
            checked already.
        """
        return self.lifecycle.verify(self._check)

    def _check(self) -> bool:
        assert self._final is not None
        message = authMessage(self.first, self.serverFirst, self._final.withoutProof)
        signature = hmacSha256(self.verifier.storedKey, message)
        recovered = sha256(xor(self._final.proof, signature))
        good = hmac.compare_digest(recovered, self.verifier.storedKey)
        if not (good and self.known):
            return False
        self._serverSignature = hmacSha256(self.verifier.serverKey, message)
        return True

    def conclude(self, keycard: Keycard) -> None:
        """
        Write the server-final message (the server's signature) into the
        keycard, after a successful check.

        @raise ProtocolError: if the check did not succeed, or the exchange
            was concluded already.
        """
        with self.lifecycle.step(ExchangeStep.CONCLUDE):
            assert self._serverSignature is not None
            final = ServerFinal(signature=self._serverSignature)
            _scram(keycard).serverFinal = final.format()
