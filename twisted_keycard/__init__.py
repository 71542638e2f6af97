"""
twisted-keycard: keycards and bouncers for authentication between Twisted
processes.
"""

from ._version import __version__
from .bouncer import Bouncer
from .client import KeycardClientFactory, KeycardLogin
from .error import (
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
from .interfaces import (
    IAnswerer,
    IBouncer,
    IChallenger,
    IExchange,
    IKeycardStore,
    IRequester,
)
from .keycard import Keycard, KeycardState, registerKeycard
from .requester import KeycardRoot, KeycardServerFactory
from .store import IssuedKeycard, MemoryStore

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
    "registerKeycard",
]
