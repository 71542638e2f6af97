"""
twisted-keycard: keycards and bouncers for authentication between Twisted
processes.
"""

from twisted_keycard._version import __version__
from twisted_keycard.bouncer import Bouncer, IBouncer, IRequester
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
from twisted_keycard.keycard import (
    IAnswerer,
    IChallenger,
    IExchange,
    Keycard,
    KeycardState,
    registerKeycard,
)
from twisted_keycard.pb import (
    KeycardClientFactory,
    KeycardClientService,
    KeycardLogin,
    KeycardRoot,
    KeycardServerFactory,
    keycardLogin,
)
from twisted_keycard.store import IKeycardStore, IssuedKeycard, MemoryStore

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
