"""
The one lifecycle of a multi-step exchange on the bouncer's side (SCRAM,
SRP, HMAC, signatures): challenged, answered, verified and concluded, each
once and in that order, with the same error for a step out of order
whatever the kind.

This is an explicit guard with an enum of states, not an Automat machine:
the lifecycle is one straight line whose only other state is "spent", and
every kind takes the same four steps, so a guard each exchange holds says
it in a table of four rows, where a machine would need an inputs protocol,
a core and a state per step, and a dependency on Automat beyond the one
Twisted declares.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import attrs

from twisted_keycard.error import ExchangeOutOfOrder


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
