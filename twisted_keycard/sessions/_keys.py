"""
The keys of a brokered session and what is made with them: the session
secret the bouncer derives from a ticket's secret, the four keys both ends
derive from it, the service's proof, the client's confirmation, and the
MAC of each sealed message.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import attrs
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

#: The HKDF salt of every derivation, naming the protocol and its version.
LABEL = b"twisted-keycard session v1"

#: Bytes of a ticket secret, a session secret and each derived key.
SECRET_BYTES = 32

#: Bytes of a client or service nonce.
NONCE_BYTES = 32

#: Bytes of a proof, a confirmation or a message MAC (HMAC-SHA256).
MAC_BYTES = 32


def _fields(*parts: bytes | str) -> bytes:
    """
    The parts, each UTF-8 if text and prefixed by its length (4 bytes, big
    endian), so that no two lists of parts give the same bytes.
    """
    out = bytearray()
    for part in parts:
        raw = part.encode("utf-8") if isinstance(part, str) else part
        out += struct.pack("!I", len(raw))
        out += raw
    return bytes(out)


def _hkdf(secret: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=SHA256(), length=length, salt=LABEL, info=info).derive(secret)


def sessionSecret(
    ticketSecret: bytes, ticketId: str, clientName: str, serviceName: str
) -> bytes:
    """
    The secret the bouncer hands to both ends of a session: HKDF-SHA256 of
    the ticket's secret, bound to the ticket id and both names, so that
    ends that disagree on any of them hold different keys.
    """
    return _hkdf(
        ticketSecret,
        _fields(b"session", ticketId, clientName, serviceName),
        SECRET_BYTES,
    )


@attrs.frozen
class SessionKeys:
    """
    The keys both ends derive from a session secret, one per use: so that
    a proof cannot pass for a confirmation, nor a message for one sent the
    other way.

    @ivar serviceProof: MACs the service's proof.
    @ivar clientProof: MACs the client's confirmation.
    @ivar clientToService: MACs the messages the client sends.
    @ivar serviceToClient: MACs the messages the service sends.
    """

    serviceProof: bytes = attrs.field(repr=False)
    clientProof: bytes = attrs.field(repr=False)
    clientToService: bytes = attrs.field(repr=False)
    serviceToClient: bytes = attrs.field(repr=False)

    @classmethod
    def derive(cls, secret: bytes) -> SessionKeys:
        """
        The four keys of the session whose secret is C{secret}.
        """
        material = _hkdf(secret, _fields(b"keys"), 4 * SECRET_BYTES)
        keys = [material[i : i + SECRET_BYTES] for i in range(0, 128, SECRET_BYTES)]
        return cls(*keys)


@attrs.frozen
class Transcript:
    """
    What both ends of an exchange must agree on: the ticket, both names as
    the bouncer gave them, and both nonces.
    """

    ticketId: str
    clientName: str
    serviceName: str
    clientNonce: bytes
    serviceNonce: bytes

    def _parts(self) -> tuple[str | bytes, ...]:
        return (
            self.ticketId,
            self.clientName,
            self.serviceName,
            self.clientNonce,
            self.serviceNonce,
        )

    def serviceProof(self, keys: SessionKeys) -> bytes:
        """
        The service's proof that it holds the redeemed session.
        """
        message = _fields(b"service proof", *self._parts())
        return hmac.new(keys.serviceProof, message, hashlib.sha256).digest()

    def clientConfirmation(self, keys: SessionKeys, serviceProof: bytes) -> bytes:
        """
        The client's confirmation that it holds the session and took the
        service's proof.
        """
        message = _fields(b"client confirmation", *self._parts(), serviceProof)
        return hmac.new(keys.clientProof, message, hashlib.sha256).digest()


def messageMac(key: bytes, sequence: int, payload: bytes) -> bytes:
    """
    The MAC of one sealed message: HMAC-SHA256 of its sequence number
    (8 bytes, big endian) and its banana-encoded bytes.
    """
    return hmac.new(key, struct.pack("!Q", sequence) + payload, hashlib.sha256).digest()


def matches(given: object, expected: bytes) -> bool:
    """
    Whether a peer's C{given} value is the bytes C{expected}, compared in
    constant time.
    """
    return isinstance(given, bytes) and hmac.compare_digest(given, expected)
