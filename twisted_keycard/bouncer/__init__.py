"""
The bouncer: challenges keycards, hands them to checkers, issues keycard ids
and tokens, and expires and revokes them; with its policies.
"""

from twisted_keycard.bouncer._bouncer import Bouncer, newKeycardId
from twisted_keycard.bouncer._composite import CompositePolicy
from twisted_keycard.bouncer._expression import ExpressionError, parse
from twisted_keycard.bouncer._interfaces import IBouncer, IRequester
from twisted_keycard.bouncer._policy import Quota, Throttle, TokenPolicy

__all__ = [
    "Bouncer",
    "CompositePolicy",
    "ExpressionError",
    "IBouncer",
    "IRequester",
    "Quota",
    "Throttle",
    "TokenPolicy",
    "newKeycardId",
    "parse",
]
