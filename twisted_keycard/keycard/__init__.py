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
    IAnswerer,
    IChallenger,
    IChannelBindingAnswerer,
    IExchange,
    NonceExchange,
    exchangeContext,
    requestVerified,
)
from twisted_keycard.keycard._keycard import (
    ADDRESS_LENGTH,
    ID_LENGTH,
    NAME_LENGTH,
    TOKEN_LENGTH,
    Keycard,
    KeycardState,
    Step,
    WireSteps,
    addressGroup,
    keycardClassFor,
    kindName,
    normalizeAddress,
    registerKeycard,
    wireField,
)
from twisted_keycard.keycard._tls import (
    BINDING_TYPES,
    TLS_EXPORTER,
    TLS_SERVER_END_POINT,
    ClientChannel,
    channelBindings,
    checkSendable,
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
    "IAnswerer",
    "IChallenger",
    "IChannelBindingAnswerer",
    "IExchange",
    "Keycard",
    "KeycardState",
    "NonceExchange",
    "Step",
    "WireSteps",
    "addressGroup",
    "channelBindings",
    "checkSendable",
    "exchangeContext",
    "keycardClassFor",
    "kindName",
    "normalizeAddress",
    "registerKeycard",
    "requestVerified",
    "serverVerified",
    "wireField",
]
