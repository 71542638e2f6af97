"""
One keycard kind's exchange on the bouncer's side, and the interfaces of a
kind: the exchange (L{IExchange}), the challenger that primes it and the
client's answerer.  Every multi-step exchange holds one
L{ExchangeLifecycle}; the nonce exchanges (HMAC, signatures) share one
implementation, L{NonceExchange}, and its checker's half.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import attrs
from twisted.cred.credentials import ICredentials
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import Attribute, Interface

from twisted_keycard.error import ExchangeOutOfOrder, KeycardRefused, ProtocolError
from twisted_keycard.keycard._keycard import Keycard

if TYPE_CHECKING:
    from twisted_keycard.keycard._keycard import Keycard
    from twisted_keycard.keycard._tls import ClientChannel


class IExchange(ICredentials):
    """
    The bouncer's side of one exchange: the challenge it sent and everything
    it must compare later.  It never leaves the bouncer.  Once answered it is
    the credentials handed to a L{twisted.cred.checkers.ICredentialsChecker}.
    """

    def challenge(keycard: Keycard) -> bool:
        """
        Write the challenge into the keycard about to go back to the client.

        @return: C{True} if the client must answer before the check, C{False}
            if the keycard already holds everything and can be checked now.
        """

    def answer(keycard: Keycard) -> None:
        """
        Take the client's answer from the keycard it sent back.  Only the
        answer fields are read; everything else comes from this object.

        @raise twisted_keycard.error.ProtocolError: if the answer is malformed
            or does not belong to this exchange.
        """

    def conclude(keycard: Keycard) -> None:
        """
        After a successful check, write the bouncer's own proof (if the
        exchange has one) into the keycard about to go back to the client.
        """


class IChallenger(Interface):
    """
    Starts exchanges for some keycard classes.  Usually the same object as
    the checker, because building a challenge needs the stored data (SCRAM
    needs the salt and the iteration count).
    """

    keycardClasses = Attribute(
        "The keycard classes this challenger starts exchanges for: a tuple."
    )

    def prime(keycard: Keycard) -> Deferred[IExchange]:
        """
        Start an exchange for the first keycard of a client.

        For an unknown user this primes a mock exchange that cannot be told
        from a real one and fails at the check.

        @return: a L{Deferred} firing with an L{IExchange}, or failing with
            L{twisted_keycard.error.ProtocolError} if the keycard is
            malformed.
        """


class IAnswerer(Interface):
    """
    The client's side of one keycard kind: makes the first keycard, answers
    challenges, and checks the server's proof.
    """

    keycardClass = Attribute("The keycard class this answerer produces.")

    def start() -> Keycard:
        """
        @return: the first keycard of an exchange.
        """

    def answer(keycard: Keycard) -> Keycard:
        """
        Answer a challenge.

        @param keycard: the keycard the server sent back, REQUESTING.
        @return: the keycard to send back.
        @raise twisted_keycard.error.ProtocolError: for a malformed or
            unacceptable challenge.
        """

    def finish(keycard: Keycard) -> None:
        """
        Check the server's proof in the AUTHENTICATED keycard.

        @raise twisted_keycard.error.ServerAuthenticationFailed: if the
            server did not prove its identity.
        """


class IChannelBindingAnswerer(IAnswerer):
    """
    An answerer whose exchange can bind to the TLS connection it runs over
    (SCRAM-SHA-256-PLUS), so that a relay between client and server is
    caught.  A client that knows the connection calls L{startBound} in
    place of C{start}.
    """

    def startBound(channel: ClientChannel) -> Keycard:
        """
        Begin an exchange over a connection.

        @param channel: the connection's channel binding data, and whether
            the server said it binds this kind.
        @return: the first keycard of the exchange.
        @raise twisted_keycard.error.ProtocolError: if the answerer insists
            on a binding this connection cannot give.
        """


class ExchangeState(enum.Enum):
    """
    Where an exchange is.  Each step is taken once, in order; a step that
    fails, a verification that does not succeed, and any step out of order
    leave the exchange L{SPENT}.
    """

    PRIMED = "primed"
    CHALLENGED = "challenged"
    ANSWERED = "answered"
    SUCCEEDED = "succeeded"
    CONCLUDED = "concluded"
    SPENT = "spent"


class ExchangeStep(enum.Enum):
    """
    The steps of an exchange, named as its methods are.
    """

    CHALLENGE = "challenge"
    ANSWER = "answer"
    VERIFY = "verify"
    CONCLUDE = "conclude"


#: The state each step starts from, and the state it leaves when it succeeds.
_ORDER = {
    ExchangeStep.CHALLENGE: (ExchangeState.PRIMED, ExchangeState.CHALLENGED),
    ExchangeStep.ANSWER: (ExchangeState.CHALLENGED, ExchangeState.ANSWERED),
    ExchangeStep.VERIFY: (ExchangeState.ANSWERED, ExchangeState.SUCCEEDED),
    ExchangeStep.CONCLUDE: (ExchangeState.SUCCEEDED, ExchangeState.CONCLUDED),
}


@attrs.define
class ExchangeLifecycle:
    """
    The guard every multi-step exchange holds: it lets each step run once,
    in order, and spends the exchange on anything else.

    @ivar state: an L{ExchangeState}.
    """

    state: ExchangeState = ExchangeState.PRIMED

    def _begin(self, step: ExchangeStep) -> None:
        # Spent until the step succeeds, so a step that raises leaves it so.
        current, self.state = self.state, ExchangeState.SPENT
        if current is not _ORDER[step][0]:
            raise ExchangeOutOfOrder(step.value)

    @contextmanager
    def step(self, step: ExchangeStep) -> Iterator[None]:
        """
        Run the body as C{step}; the exchange moves on if it returns and
        stays spent if it raises.  Not for L{ExchangeStep.VERIFY}: see
        L{verify}.

        @raise ExchangeOutOfOrder: if C{step} is not the next one.
        @raise ValueError: for L{ExchangeStep.VERIFY}, whose outcome is not
            whether its body raises.
        """
        if step is ExchangeStep.VERIFY:
            raise ValueError("verify with ExchangeLifecycle.verify")
        self._begin(step)
        yield
        self.state = _ORDER[step][1]

    def verify(self, check: Callable[[], bool]) -> bool:
        """
        Take the verify step: run C{check} once.

        @return: what C{check} returns; the exchange may be concluded only
            if it is C{True}, and is spent otherwise.
        @raise ExchangeOutOfOrder: if the exchange is not answered, or was
            verified already.
        """
        self._begin(ExchangeStep.VERIFY)
        if not check():
            return False
        self.state = ExchangeState.SUCCEEDED
        return True


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


class SelfChecking(Protocol):
    def verify(self) -> bool:
        """
        Check the client's answer, once.

        @raise twisted_keycard.error.ExchangeOutOfOrder: if there is no
            answer, or it was checked.
        """


_E = TypeVar("_E", bound=SelfChecking)


def requestVerified(
    credentials: object, kind: type[_E], avatarId: Callable[[_E], str]
) -> Deferred[Any]:
    """
    What C{requestAvatarId} answers for an exchange of class C{kind}.

    @return: a L{Deferred} firing with C{avatarId(credentials)} when it
        verifies, or failing with L{KeycardRefused} for a wrong answer or
        other credentials, or with the
        L{twisted_keycard.error.ExchangeOutOfOrder} of an exchange not
        answered or checked already.
    """
    if not isinstance(credentials, kind):
        return fail(KeycardRefused())
    try:
        good = credentials.verify()
    except ProtocolError as e:
        return fail(e)
    return succeed(avatarId(credentials)) if good else fail(KeycardRefused())
