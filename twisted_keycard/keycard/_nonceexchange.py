"""
The bouncer's side of a nonce exchange (HMAC, signatures): it sends a
nonce bound to this exchange, takes the client's proof once and checks it
once; nothing goes back, as the client trusts the server through TLS.
Each kind says only what its proof is and how it is checked (a
L{ProofCheck}).
"""

from __future__ import annotations

from typing import Protocol

import attrs

from twisted_keycard.error import ProtocolError
from twisted_keycard.keycard._keycard import Keycard
from twisted_keycard.keycard._lifecycle import ExchangeLifecycle, ExchangeStep


def exchangeContext(
    label: bytes, name: str, nonce: str, keycardId: str, requesterName: str | None
) -> bytes:
    """
    What a client proves: the label, the nonce, the keycard id, the
    requester and the client's name, NUL-separated, so a proof made for one
    exchange is worth nothing in another.  Only the name (last) comes from
    the client; the other parts hold no NUL, so no two contexts read alike.
    """
    parts = [label, nonce.encode(), keycardId.encode(), (requesterName or "").encode()]
    return b"\0".join([*parts, name.encode("utf-8")])


class NonceKeycard(Protocol):
    """
    The fields a nonce exchange's challenge reads and writes.
    """

    id: str | None
    requesterName: str | None
    nonce: str | None


class ProofCheck(Protocol):
    """
    What one kind of nonce exchange takes as the client's proof, and how it
    checks it (with the client's key, or one nobody holds for an unknown
    name, so the refusal is the same).
    """

    @property
    def label(self) -> bytes:
        """
        What every context of this kind starts with (see L{exchangeContext}).
        """

    @property
    def keycardClass(self) -> type[NonceKeycard]:
        """
        The keycard class of this kind.
        """

    def read(self, keycard: Keycard) -> bytes:
        """
        @return: the proof in the keycard the client sent back.
        @raise ProtocolError: if there is none, or it is malformed.
        """

    def accepts(self, context: bytes, proof: bytes) -> bool:
        """
        @return: whether C{proof} proves C{context} for a known client.
        """


@attrs.define(eq=False)
class NonceExchange:
    """
    One nonce exchange, every step under an L{ExchangeLifecycle}.  Each
    kind subclasses it only to declare its exchange interface.

    @ivar name: the client's name, which selects its key.
    @ivar nonce: the challenge (base64).
    @ivar check: how the client's proof is read and checked.
    @ivar context: what the client must prove, fixed by the challenge.
    @ivar proof: the client's proof, once answered.
    @ivar lifecycle: the guard that takes each step once, in order.
    """

    name: str
    nonce: str
    check: ProofCheck = attrs.field(repr=False)
    context: bytes = attrs.field(default=b"", init=False, repr=False)
    proof: bytes | None = attrs.field(default=None, init=False, repr=False)
    lifecycle: ExchangeLifecycle = attrs.field(factory=ExchangeLifecycle, init=False)

    def challenge(self, keycard: Keycard) -> bool:
        """
        Write the nonce into the keycard and bind it to the keycard's id and
        requester.

        @return: C{True}: the client must answer.
        """
        with self.lifecycle.step(ExchangeStep.CHALLENGE):
            if not isinstance(keycard, self.check.keycardClass) or keycard.id is None:
                raise ProtocolError("no keycard id to bind the nonce to")
            keycard.nonce = self.nonce
            self.context = exchangeContext(
                self.check.label,
                self.name,
                self.nonce,
                keycard.id,
                keycard.requesterName,
            )
        return True

    def answer(self, keycard: Keycard) -> None:
        """
        Take the client's proof, the only field read back.

        @raise ProtocolError: if it is missing, malformed or out of order.
        """
        with self.lifecycle.step(ExchangeStep.ANSWER):
            self.proof = self.check.read(keycard)

    def verify(self) -> bool:
        """
        Check the client's proof, once.

        @return: whether it proves the context for a known client.
        @raise ProtocolError: if the exchange is not answered, or was
            checked already.
        """
        return self.lifecycle.verify(self._check)

    def _check(self) -> bool:
        assert self.proof is not None
        return self.check.accepts(self.context, self.proof)

    def conclude(self, keycard: Keycard) -> None:
        """
        Write nothing: there is no proof back, the client trusts the server
        through TLS.  Taken only after a successful check, once.
        """
        with self.lifecycle.step(ExchangeStep.CONCLUDE):
            return
