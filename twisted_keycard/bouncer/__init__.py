"""
The bouncer: challenges keycards, hands them to checkers, issues keycard ids
and tokens, and expires and revokes them; with its policies.
"""

from twisted_keycard.bouncer._bouncer import Bouncer, newKeycardId
from twisted_keycard.bouncer._composite import (
    AddressRule,
    CompositePolicy,
    ExpressionError,
    parse,
)
from twisted_keycard.bouncer._interfaces import IBouncer, IRequester
from twisted_keycard.bouncer._revocation import RevocationMirror, Revoker
from twisted_keycard.bouncer._settings import (
    ExchangeLimits,
    Quota,
    Throttle,
    TokenPolicy,
    Upkeep,
)
from twisted_keycard.bouncer._upkeep import RevocationFollower

__all__ = [
    "AddressRule",
    "Bouncer",
    "CompositePolicy",
    "ExchangeLimits",
    "ExpressionError",
    "IBouncer",
    "IRequester",
    "Quota",
    "RevocationFollower",
    "RevocationMirror",
    "Revoker",
    "Throttle",
    "TokenPolicy",
    "Upkeep",
    "newKeycardId",
    "parse",
]
