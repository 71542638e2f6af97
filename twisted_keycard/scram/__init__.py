"""
SCRAM-SHA-256 keycards (RFC 5802, RFC 7677).

The server keeps verifiers in PostgreSQL's format, never passwords; the
client's password never leaves it; the client checks the server's
signature, so the login is mutual.  The keycard carries the standard SCRAM
messages, so any SCRAM implementation can take either side.
"""

from twisted_keycard.keycard._lifecycle import ExchangeState
from twisted_keycard.scram._checkpassword import (
    CheckPasswordSCRAM,
    IPasswordSCRAMExchange,
    PasswordSCRAMExchange,
    SCRAMProof,
)
from twisted_keycard.scram._client import SCRAMAnswerer
from twisted_keycard.scram._exchange import ISCRAMExchange, SCRAMExchange
from twisted_keycard.scram._keycache import SCRAMKeyCache
from twisted_keycard.scram._keycard import SCRAMKeycard
from twisted_keycard.scram._messages import (
    ClientFinal,
    ClientFirst,
    ServerFinal,
    ServerFirst,
)
from twisted_keycard.scram._password import SCRAMPasswordChecker
from twisted_keycard.scram._server import SCRAMVerifiers, readVerifiers
from twisted_keycard.scram._verifier import Verifier

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
    "readVerifiers",
]
