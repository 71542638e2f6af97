"""
twisted-keycard: keycards and bouncers for authentication between Twisted
processes.
"""

from twisted_keycard._version import __version__
from twisted_keycard.bouncer._bouncer import Bouncer
from twisted_keycard.bouncer._interfaces import IBouncer, IRequester
from twisted_keycard.error import (
    InsecureTransport,
    InvalidKeycard,
    KeycardDenied,
    KeycardError,
    KeycardRefused,
    MalformedMessage,
    ProtocolError,
    ServerAuthenticationFailed,
    TooManyRounds,
)
from twisted_keycard.keycard._exchange import IAnswerer, IChallenger, IExchange
from twisted_keycard.keycard._keycard import Keycard, KeycardState, registerKeycard
from twisted_keycard.pb._client import KeycardClientFactory, KeycardLogin, keycardLogin
from twisted_keycard.pb._clientservice import KeycardClientService
from twisted_keycard.pb._root import KeycardRoot
from twisted_keycard.pb._serverfactory import KeycardServerFactory
from twisted_keycard.store._interfaces import IKeycardStore, IssuedKeycard
from twisted_keycard.store._memory import MemoryStore

__all__ = [
    "Bouncer",
    "IAnswerer",
    "IBouncer",
    "IChallenger",
    "IExchange",
    "IKeycardStore",
    "IRequester",
    "InsecureTransport",
    "InvalidKeycard",
    "IssuedKeycard",
    "Keycard",
    "KeycardClientFactory",
    "KeycardClientService",
    "KeycardDenied",
    "KeycardError",
    "KeycardLogin",
    "KeycardRefused",
    "KeycardRoot",
    "KeycardServerFactory",
    "KeycardState",
    "MalformedMessage",
    "MemoryStore",
    "ProtocolError",
    "ServerAuthenticationFailed",
    "TooManyRounds",
    "__version__",
    "keycardLogin",
    "registerKeycard",
]
