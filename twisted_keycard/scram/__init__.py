"""
SCRAM-SHA-256 keycards (RFC 5802, RFC 7677).

The server keeps verifiers in PostgreSQL's format, never passwords; the
client's password never leaves it; the client checks the server's
signature, so the login is mutual.  The keycard carries the standard SCRAM
messages, so any SCRAM implementation can take either side.
"""

from ._client import SCRAMAnswerer
from ._exchange import ExchangeState, ISCRAMExchange, SCRAMExchange
from ._keycache import SCRAMKeyCache
from ._keycard import SCRAMKeycard
from ._messages import ClientFinal, ClientFirst, ServerFinal, ServerFirst
from ._server import SCRAMVerifiers, readVerifiers
from ._verifier import Verifier

__all__ = [
    "ClientFinal",
    "ClientFirst",
    "ExchangeState",
    "ISCRAMExchange",
    "SCRAMAnswerer",
    "SCRAMExchange",
    "SCRAMKeyCache",
    "SCRAMKeycard",
    "SCRAMVerifiers",
    "ServerFinal",
    "ServerFirst",
    "Verifier",
    "readVerifiers",
]
