"""
Keycards: credentials that travel between processes over Perspective Broker;
the declarations of the fields they carry over the wire, the lifecycle of
their exchanges on the bouncer, and what each end knows of the TLS under
them (whether the server was verified, channel binding data).
"""

from twisted_keycard.keycard._exchange import (
    ExchangeLifecycle,
    ExchangeState,
    ExchangeStep,
)
from twisted_keycard.keycard._keycard import (
    ADDRESS_LENGTH,
    ID_LENGTH,
    NAME_LENGTH,
    TOKEN_LENGTH,
    Keycard,
    KeycardState,
    keycardClassFor,
    registerKeycard,
    wireField,
)
from twisted_keycard.keycard._tls import (
    BINDING_TYPES,
    TLS_EXPORTER,
    TLS_SERVER_END_POINT,
    ClientChannel,
    channelBindings,
    serverVerified,
)

__all__ = [
    "ADDRESS_LENGTH",
    "BINDING_TYPES",
    "ID_LENGTH",
    "NAME_LENGTH",
    "TLS_EXPORTER",
    "TLS_SERVER_END_POINT",
    "TOKEN_LENGTH",
    "ClientChannel",
    "ExchangeLifecycle",
    "ExchangeState",
    "ExchangeStep",
    "Keycard",
    "KeycardState",
    "channelBindings",
    "keycardClassFor",
    "registerKeycard",
    "serverVerified",
    "wireField",
]
