"""
Keycards: credentials that travel between processes over Perspective Broker;
the declarations of the fields they carry over the wire, and the lifecycle
of their exchanges on the bouncer.
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
from twisted_keycard.keycard._lifecycle import (
    ExchangeLifecycle,
    ExchangeState,
    ExchangeStep,
)

__all__ = [
    "ADDRESS_LENGTH",
    "ID_LENGTH",
    "NAME_LENGTH",
    "TOKEN_LENGTH",
    "ExchangeLifecycle",
    "ExchangeState",
    "ExchangeStep",
    "Keycard",
    "KeycardState",
    "keycardClassFor",
    "registerKeycard",
    "wireField",
]
