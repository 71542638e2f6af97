"""
The bouncer: challenges keycards, hands them to checkers, issues keycard ids
and tokens, and expires and revokes them; with its policies.
"""

from twisted_keycard.bouncer._bouncer import DEFAULT_DURATION, Bouncer, newKeycardId
from twisted_keycard.bouncer._composite import (
    AddressRule,
    CompositePolicy,
    ExpressionError,
    parse,
)
from twisted_keycard.bouncer._held import ExpiryTimers
from twisted_keycard.bouncer._interfaces import (
    REASONS,
    RESULTS,
    BouncerGauges,
    IBouncer,
    IBouncerMetrics,
    IRequester,
    NoMetrics,
    failureReason,
)
from twisted_keycard.bouncer._login import Reservation, Throttler
from twisted_keycard.bouncer._revocation import (
    AVATAR,
    REQUESTER,
    Revoker,
)
from twisted_keycard.bouncer._seats import (
    TICKET_REFUSED,
    SeatQueue,
    SeatRequest,
    seatRequestOf,
    waitForSeat,
)
from twisted_keycard.bouncer._settings import (
    ExchangeLimits,
    Quota,
    SeatQueuePolicy,
    Throttle,
    TokenPolicy,
    Upkeep,
)
from twisted_keycard.bouncer._upkeep import RevocationFollower

__all__ = [
    "AVATAR",
    "DEFAULT_DURATION",
    "REASONS",
    "REQUESTER",
    "RESULTS",
    "TICKET_REFUSED",
    "AddressRule",
    "Bouncer",
    "BouncerGauges",
    "CompositePolicy",
    "ExchangeLimits",
    "ExpiryTimers",
    "ExpressionError",
    "IBouncer",
    "IBouncerMetrics",
    "IRequester",
    "NoMetrics",
    "Quota",
    "Reservation",
    "RevocationFollower",
    "Revoker",
    "SeatQueue",
    "SeatQueuePolicy",
    "SeatRequest",
    "Throttle",
    "Throttler",
    "TokenPolicy",
    "Upkeep",
    "failureReason",
    "newKeycardId",
    "parse",
    "seatRequestOf",
    "waitForSeat",
]
