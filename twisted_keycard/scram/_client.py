"""
The client's side of SCRAM-SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from zope.interface import implementer

from ..error import ProtocolError, ServerAuthenticationFailed
from ..interfaces import IAnswerer
from ..keycard import Keycard
from ._keycard import SCRAMKeycard
from ._messages import ClientFinal, ClientFirst, ServerFirst, b64, parseServerFinal
from ._verifier import clientKey, hmacSha256, saltedPassword, serverKey, xor

CLIENT_NONCE_BYTES = 24

#: Salts whose keys a L{SCRAMKeyCache} remembers, at most.
CACHE_SIZE = 16


class SCRAMKeyCache:
    """
    Remembers the client and server keys derived from a password for a salt
    and iteration count (RFC 5802, section 5.1 allows it), so that logging
    in again costs no PBKDF2.  Share one among the answerers of one
    password; keep it as secret as the password.
    """

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._size = size
        self._keys: dict[tuple[bytes, int], tuple[bytes, bytes]] = {}

    def __repr__(self) -> str:
        return f"<SCRAMKeyCache of {len(self._keys)}>"

    def keys(self, password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
        """
        The client key and the server key for C{password}.
        """
        found = self._keys.get((salt, iterations))
        if found is None:
            salted = saltedPassword(password, salt, iterations)
            found = clientKey(salted), serverKey(salted)
            if len(self._keys) >= self._size:
                self._keys.pop(next(iter(self._keys)))
            self._keys[(salt, iterations)] = found
        return found


@implementer(IAnswerer)
class SCRAMAnswerer:
    """
    Logs in as C{username} with a password that never leaves the client;
    checks the server's signature, and refuses absurd iteration counts.
    """

    keycardClass = SCRAMKeycard

    def __init__(
        self,
        username: str,
        password: str,
        *,
        minIterations: int = 4096,
        maxIterations: int = 1_000_000,
        nonce: str | None = None,
        cache: SCRAMKeyCache | None = None,
    ) -> None:
        """
        @param cache: keys derived earlier from this same password; a new
            answerer with its own cache by default.
        """
        self.username = username
        self._password = password
        self.minIterations = minIterations
        self.maxIterations = maxIterations
        self._nonce = nonce
        self._cache = cache if cache is not None else SCRAMKeyCache(1)
        self._first: ClientFirst | None = None
        self._expected: bytes | None = None

    def __repr__(self) -> str:
        return f"<SCRAMAnswerer {self.username!r}>"

    def start(self) -> Keycard:
        nonce = self._nonce or b64(secrets.token_bytes(CLIENT_NONCE_BYTES))
        self._first = ClientFirst("n,,", self.username, nonce)
        self._expected = None
        return SCRAMKeycard(clientFirst=self._first.format())

    def answer(self, keycard: Keycard) -> Keycard:
        first = self._first
        if first is None or not isinstance(keycard, SCRAMKeycard):
            raise ProtocolError("no SCRAM exchange in progress")
        serverFirst = ServerFirst.parse(keycard.serverFirst)
        nonce = serverFirst.nonce
        if not nonce.startswith(first.nonce) or len(nonce) <= len(first.nonce):
            raise ProtocolError("the server's nonce does not extend ours")
        if not self.minIterations <= serverFirst.iterations <= self.maxIterations:
            raise ProtocolError(
                f"refusing an iteration count of {serverFirst.iterations}"
                f" (accepted: {self.minIterations} to {self.maxIterations})"
            )
        key, server = self._cache.keys(
            self._password, serverFirst.salt, serverFirst.iterations
        )
        withoutProof = ClientFinal(b64(first.gs2Header.encode("ascii")), nonce, b"")
        authMessage = ",".join(
            [first.bare, serverFirst.format(), withoutProof.withoutProof]
        ).encode("utf-8")
        proof = xor(key, hmacSha256(hashlib.sha256(key).digest(), authMessage))
        self._expected = hmacSha256(server, authMessage)
        keycard.clientFinal = ClientFinal(
            withoutProof.channelBinding, nonce, proof
        ).format()
        return keycard

    def finish(self, keycard: Keycard) -> None:
        expected = self._expected
        if expected is None or not isinstance(keycard, SCRAMKeycard):
            raise ServerAuthenticationFailed("the server skipped the SCRAM exchange")
        if keycard.serverFinal is None:
            raise ServerAuthenticationFailed("the server sent no signature")
        try:
            signature = parseServerFinal(keycard.serverFinal)
        except ProtocolError as e:
            raise ServerAuthenticationFailed(str(e)) from None
        if not hmac.compare_digest(signature, expected):
            raise ServerAuthenticationFailed("the server's signature is wrong")
