"""
Perspective Broker with keycards: the requester's root object, the client's
factory, and the broker both use.
"""

from twisted_keycard.pb._broker import ConnectionLimits, KeycardBroker, MessageBudget
from twisted_keycard.pb._client import KeycardClientFactory, KeycardLogin, keycardLogin
from twisted_keycard.pb._clientservice import KeycardClientService
from twisted_keycard.pb._root import KeycardRoot, portalCheckers
from twisted_keycard.pb._serverfactory import KeycardServerFactory

__all__ = [
    "ConnectionLimits",
    "KeycardBroker",
    "KeycardClientFactory",
    "KeycardClientService",
    "KeycardLogin",
    "KeycardRoot",
    "KeycardServerFactory",
    "MessageBudget",
    "keycardLogin",
    "portalCheckers",
]
