"""
SCRAM-SHA-256 keycards (RFC 5802, RFC 7677).

The server keeps verifiers in PostgreSQL's format, never passwords; the
client's password never leaves it; the client checks the server's
signature, so the login is mutual.  The keycard carries the standard SCRAM
messages, so any SCRAM implementation can take either side.
"""

from twisted_keycard.keycard import ExchangeState
from twisted_keycard.scram._client import SCRAMAnswerer, SCRAMKeyCache
from twisted_keycard.scram._messages import (
    ClientFinal,
    ClientFirst,
    SCRAMKeycard,
    ServerFinal,
    ServerFirst,
    b64,
    checkUserName,
)
from twisted_keycard.scram._password import (
    CheckPasswordSCRAM,
    IPasswordSCRAMExchange,
    PasswordSCRAMExchange,
    SCRAMPasswordChecker,
    SCRAMProof,
)
from twisted_keycard.scram._server import (
    ISCRAMExchange,
    SCRAMExchange,
    SCRAMVerifiers,
    Verifier,
    parseVerifiers,
    readVerifiers,
)

__all__ = [
    "CheckPasswordSCRAM",
    "ClientFinal",
    "ClientFirst",
    "ExchangeState",
    "IPasswordSCRAMExchange",
    "ISCRAMExchange",
    "PasswordSCRAMExchange",
    "SCRAMAnswerer",
    "SCRAMExchange",
    "SCRAMKeyCache",
    "SCRAMKeycard",
    "SCRAMPasswordChecker",
    "SCRAMProof",
    "SCRAMVerifiers",
    "ServerFinal",
    "ServerFirst",
    "Verifier",
    "b64",
    "checkUserName",
    "parseVerifiers",
    "readVerifiers",
]
