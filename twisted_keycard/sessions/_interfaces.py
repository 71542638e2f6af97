"""
What a brokered session is: the roles on the service's side, the records
the bouncer hands to each end, and the keys derived for it and what is
made with them.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import struct
from collections.abc import Sequence

import attrs
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from twisted.internet.defer import Deferred
from zope.interface import Interface

from twisted_keycard.error import SessionRefused


class ISessionListener(Interface):
    """
    What the bouncer (or the service's link to it) tells a service that
    holds sessions.
    """

    def endSessions(sessionIds: Sequence[str]) -> None:
        """
        The keycards of these sessions' clients ended (expired, revoked, or
        their clients left the bouncer): drop the sessions.
        """

    def endAllSessions() -> None:
        """
        The service can no longer hear of revocations (its link to the
        bouncer is gone): drop every session.
        """


class ITicketRedeemer(Interface):
    """
    The bouncer as one service sees it: the service's name is the one the
    bouncer knows it by (its avatar id over PB), never one it claims.
    """

    def listen(listener: ISessionListener) -> None:
        """
        Tell C{listener} when sessions end at the bouncer; tickets are
        granted for this service only while one listens.
        """

    def redeem(ticketId: str) -> Deferred[SessionGrant]:
        """
        Redeem a ticket a client presented: the bouncer marks the service's
        check, and the ticket cannot be redeemed again.

        @return: a L{Deferred} firing with the L{SessionGrant} (who the
            client is, the session secret), or failing with
            L{twisted_keycard.error.SessionRefused} if the ticket is
            unknown, expired, already redeemed or for another service.
        """

    def confirm(
        ticketId: str, clientNonce: bytes, serviceNonce: bytes, confirmation: bytes
    ) -> Deferred[None]:
        """
        The client confirmed the session: the bouncer checks the
        confirmation, marks the client's check, and deletes the ticket.

        @return: a L{Deferred} firing with C{None} once the session is
            established (the bouncer will tell the listener when it ends),
            or failing with L{twisted_keycard.error.SessionRefused}.
        """

    def ended(sessionIds: Sequence[str]) -> Deferred[None]:
        """
        These sessions ended on the service's side (idle, broken, closed).

        @return: a L{Deferred} firing with C{None}.
        """


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


#: Characters of a ticket id, at most (the bouncer's are 32).
TICKET_ID_LENGTH = 64

#: Characters of a client or service name, at most (as an avatar id).
NAME_LENGTH = 256

_WIRE_KEYS = frozenset(["ticket", "secret", "client", "service", "expires"])


def validTicketId(value: object) -> bool:
    """
    Whether a peer's C{value} may be a ticket id.
    """
    return isinstance(value, str) and 0 < len(value) <= TICKET_ID_LENGTH


def validName(value: object) -> bool:
    """
    Whether a peer's C{value} may be a client or service name.
    """
    return isinstance(value, str) and 0 < len(value) <= NAME_LENGTH


@attrs.frozen
class SessionGrant:
    """
    A ticket as the bouncer hands it to the client (when it asks for it)
    and to the service (when it redeems it).

    @ivar ticketId: what the client presents to the service; the id of the
        session once established.
    @ivar secret: the session secret (see L{sessionSecret}).
    @ivar clientName: the client's avatar id, as the bouncer knows it.
    @ivar serviceName: the service's name, as the bouncer knows it.
    @ivar expires: POSIX time after which the ticket is refused.
    """

    ticketId: str
    secret: bytes = attrs.field(repr=False)
    clientName: str
    serviceName: str
    expires: float

    def toWire(self) -> dict[str, object]:
        """
        The dictionary that crosses PB.
        """
        return {
            "ticket": self.ticketId,
            "secret": self.secret,
            "client": self.clientName,
            "service": self.serviceName,
            "expires": self.expires,
        }

    @classmethod
    def fromWire(cls, state: object) -> SessionGrant:
        """
        The grant a peer sent, checked.

        @raise SessionRefused: if C{state} is not a grant.
        """
        if not isinstance(state, dict) or set(state) != _WIRE_KEYS:
            raise SessionRefused()
        ticketId, secret, expires = state["ticket"], state["secret"], state["expires"]
        client, service = state["client"], state["service"]
        if not (
            validTicketId(ticketId)
            and isinstance(secret, bytes)
            and len(secret) == SECRET_BYTES
            and validName(client)
            and validName(service)
            and isinstance(expires, int | float)
            and not isinstance(expires, bool)
            and math.isfinite(expires)
        ):
            raise SessionRefused()
        return cls(ticketId, secret, client, service, float(expires))
