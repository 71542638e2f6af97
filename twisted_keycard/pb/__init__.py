"""
Perspective Broker with keycards: the requester's root object, the client's
factory, and the broker both use.
"""

from twisted_keycard.pb._broker import (
    BananaDecoder,
    ConnectionLimits,
    Decoding,
    KeycardBroker,
    LinearDecoder,
    MessageBudget,
    describe,
    encodeInto,
)
from twisted_keycard.pb._budget import TOO_MANY, ConnectionBudget, Stranger
from twisted_keycard.pb._client import (
    KeycardClientFactory,
    KeycardLogin,
    keycardLogin,
    localError,
    refuseProtocol1,
)
from twisted_keycard.pb._clientservice import KeycardClientService, reconnectPolicy
from twisted_keycard.pb._root import (
    HEARTBEAT_NAME,
    Heartbeat,
    HeartbeatAnswerer,
    KeycardRoot,
    peerAddress,
    portalCheckers,
)
from twisted_keycard.pb._serverfactory import KeycardServerFactory

__all__ = [
    "HEARTBEAT_NAME",
    "TOO_MANY",
    "BananaDecoder",
    "ConnectionBudget",
    "ConnectionLimits",
    "Decoding",
    "Heartbeat",
    "HeartbeatAnswerer",
    "KeycardBroker",
    "KeycardClientFactory",
    "KeycardClientService",
    "KeycardLogin",
    "KeycardRoot",
    "KeycardServerFactory",
    "LinearDecoder",
    "MessageBudget",
    "Stranger",
    "describe",
    "encodeInto",
    "keycardLogin",
    "localError",
    "peerAddress",
    "portalCheckers",
    "reconnectPolicy",
    "refuseProtocol1",
]
