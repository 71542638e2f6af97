"""
Signed tokens and the keyring that signs them.
"""

from twisted_keycard.tokens._format import (
    BadSignature,
    MalformedToken,
    TokenClaims,
    keycardIdOf,
    sign,
    verify,
)
from twisted_keycard.tokens._holder import KeyringHolder
from twisted_keycard.tokens._keyring import Keyring, SigningKey, UnknownKey

__all__ = [
    "BadSignature",
    "Keyring",
    "KeyringHolder",
    "MalformedToken",
    "SigningKey",
    "TokenClaims",
    "UnknownKey",
    "keycardIdOf",
    "sign",
    "verify",
]
