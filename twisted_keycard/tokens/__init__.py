"""
Signed tokens, the keyring that signs them, and the token keycard that logs
in again with one.
"""

from twisted_keycard.tokens._checker import (
    DEFAULT_MAX_FAMILY_LIFETIME,
    DEFAULT_SKEW,
    FAMILY,
    ITokenExchange,
    RevocationMirror,
    RevocationRecord,
    RevocationStore,
    TokenAnswerer,
    TokenChecker,
    TokenExchange,
    TokenKeycard,
)
from twisted_keycard.tokens._tickets import (
    MAX_TICKET,
    QueueTicket,
    claimedPool,
    newTicketId,
    signTicket,
    verifyTicket,
)
from twisted_keycard.tokens._tokens import (
    MAC_BYTES,
    BadSignature,
    Keyring,
    KeyringHolder,
    MalformedToken,
    SigningKey,
    TokenClaims,
    UnknownKey,
    claimedAvatar,
    claimedExpiry,
    keycardIdOf,
    sign,
    verify,
)

__all__ = [
    "DEFAULT_MAX_FAMILY_LIFETIME",
    "DEFAULT_SKEW",
    "FAMILY",
    "MAC_BYTES",
    "MAX_TICKET",
    "BadSignature",
    "ITokenExchange",
    "Keyring",
    "KeyringHolder",
    "MalformedToken",
    "QueueTicket",
    "RevocationMirror",
    "RevocationRecord",
    "RevocationStore",
    "SigningKey",
    "TokenAnswerer",
    "TokenChecker",
    "TokenClaims",
    "TokenExchange",
    "TokenKeycard",
    "UnknownKey",
    "claimedAvatar",
    "claimedExpiry",
    "claimedPool",
    "keycardIdOf",
    "newTicketId",
    "sign",
    "signTicket",
    "verify",
    "verifyTicket",
]
