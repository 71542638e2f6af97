"""
SCRAM-SHA-256 keycards (RFC 5802, RFC 7677).

The server keeps verifiers in PostgreSQL's format, never passwords; the
client's password never leaves it; the client checks the server's
signature, so the login is mutual.
"""

from ._client import SCRAMAnswerer, SCRAMKeyCache
from ._keycard import SCRAMKeycard
from ._messages import ClientFinal, ClientFirst, ServerFirst
from ._server import ISCRAMExchange, SCRAMExchange, SCRAMVerifiers, readVerifiers
from ._verifier import Verifier

__all__ = [
    "ClientFinal",
    "ClientFirst",
    "ISCRAMExchange",
    "SCRAMAnswerer",
    "SCRAMExchange",
    "SCRAMKeyCache",
    "SCRAMKeycard",
    "SCRAMVerifiers",
    "ServerFirst",
    "Verifier",
    "readVerifiers",
]
