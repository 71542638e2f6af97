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
    ) -> None:
        self.username = username
        self._password = password
        self.minIterations = minIterations
        self.maxIterations = maxIterations
        self._nonce = nonce
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
        salted = saltedPassword(
            self._password, serverFirst.salt, serverFirst.iterations
        )
        withoutProof = ClientFinal(b64(first.gs2Header.encode("ascii")), nonce, b"")
        authMessage = ",".join(
            [first.bare, serverFirst.format(), withoutProof.withoutProof]
        ).encode("utf-8")
        key = clientKey(salted)
        proof = xor(key, hmacSha256(hashlib.sha256(key).digest(), authMessage))
        self._expected = hmacSha256(serverKey(salted), authMessage)
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
