"""
Keycards: credentials that travel between processes over Perspective Broker,
and the declarations of the fields they carry over the wire.
"""

from twisted_keycard.keycard._fields import wireField
from twisted_keycard.keycard._keycard import (
    ADDRESS_LENGTH,
    ID_LENGTH,
    NAME_LENGTH,
    TOKEN_LENGTH,
    Keycard,
    KeycardState,
    keycardClassFor,
    registerKeycard,
)

__all__ = [
    "ADDRESS_LENGTH",
    "ID_LENGTH",
    "NAME_LENGTH",
    "TOKEN_LENGTH",
    "Keycard",
    "KeycardState",
    "keycardClassFor",
    "registerKeycard",
    "wireField",
]
