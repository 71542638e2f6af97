"""
What one end of a connection knows of the TLS under it: whether a client
checked the server's certificate, and the connection's channel binding data
(RFC 5056: data that names one TLS connection, so that an exchange run over
it proves that no relay sits between the two ends).
"""

from __future__ import annotations

import binascii
import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)
from twisted.internet.interfaces import ISSLTransport

from twisted_keycard.error import InsecureTransport

if TYPE_CHECKING:
    from twisted_keycard.keycard._keycard import Keycard


#: RFC 9266: the TLS 1.3 exporter, label C{EXPORTER-Channel-Binding}, an
#: empty context, 32 bytes.
TLS_EXPORTER = "tls-exporter"
#: RFC 5929: a hash of the server's certificate.
TLS_SERVER_END_POINT = "tls-server-end-point"
#: The types this library computes, in a client's order of preference.
BINDING_TYPES = (TLS_EXPORTER, TLS_SERVER_END_POINT)

EXPORTER_LABEL = b"EXPORTER-Channel-Binding"
EXPORTER_BYTES = 32

#: Bytes of one binding at most (a SHA-512 certificate hash).
MAX_BINDING_BYTES = 64
#: Characters of the wire form at most.
BINDINGS_LENGTH = 256


def endPointHash(certificate: x509.Certificate) -> bytes | None:
    """
    The C{tls-server-end-point} data of a server certificate (RFC 5929,
    section 4.1): its DER form hashed with the hash of its signature
    algorithm, SHA-256 in place of MD5 or SHA-1.

    @return: the hash, or C{None} when the signature algorithm has no single
        hash (Ed25519, Ed448), for which RFC 5929 defines no binding.
    """
    try:
        algorithm = certificate.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None
    if algorithm is None:
        return None
    if isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(certificate.public_bytes(Encoding.DER))
    return digest.finalize()


def formatBindings(bindings: Mapping[str, bytes]) -> str:
    """
    The wire form of channel bindings: C{type=base64} items joined by
    C{","}, in the order of L{BINDING_TYPES}.
    """
    return ",".join(
        f"{kind}={binascii.b2a_base64(bindings[kind], newline=False).decode()}"
        for kind in BINDING_TYPES
        if kind in bindings
    )


def parseBindings(text: str) -> Mapping[str, bytes]:
    """
    Read the wire form of channel bindings (see L{formatBindings}).

    @raise ValueError: for an unknown or repeated type, or data that is not
        canonical base64 of 1 to L{MAX_BINDING_BYTES} bytes.
    """
    bindings: dict[str, bytes] = {}
    for item in text.split(","):
        kind, sep, encoded = item.partition("=")
        if not sep or kind not in BINDING_TYPES or kind in bindings:
            raise ValueError("unknown or repeated channel binding type")
        try:
            data = binascii.a2b_base64(encoded, strict_mode=True)
        except binascii.Error:
            raise ValueError("channel binding data is not base64") from None
        canonical = binascii.b2a_base64(data, newline=False).decode()
        if canonical != encoded or not 0 < len(data) <= MAX_BINDING_BYTES:
            raise ValueError("channel binding data is not canonical")
        bindings[kind] = data
    return bindings


@attrs.frozen
class ClientChannel:
    """
    What a client knows of the connection it logs in over, for an exchange
    that can bind to it.

    @ivar bindings: the channel binding data of this connection, by type;
        empty without TLS.
    @ivar serverBinds: whether the server said it binds this kind of
        exchange to the channel (it listed the kind's C{channelBoundType});
        C{None} when the client did not ask.
    """

    bindings: Mapping[str, bytes] = attrs.field(factory=dict, repr=False)
    serverBinds: bool | None = None


#: The one TLS version whose exporter RFC 9266 binds to.
_TLS13 = "TLSv1.3"


def tlsConnection(transport: object) -> Any:
    """
    The pyOpenSSL connection under a TLS transport, or C{None} for a
    transport without TLS.
    """
    if transport is None or not ISSLTransport.providedBy(transport):
        return None
    getHandle = getattr(transport, "getHandle", None)
    if getHandle is None:
        return None
    handle = getHandle()
    return handle if hasattr(handle, "get_verify_mode") else None


def serverVerified(transport: object) -> bool:
    """
    Whether the client end of a connection checked the server: the
    connection is TLS, OpenSSL was told to verify the peer (C{VERIFY_PEER},
    so the handshake fails on a certificate chain its trust roots do not
    vouch for), and the server's certificate names the host the client
    asked for: the name it sent in SNI, or, for a host given as an IP
    address (no SNI), the address it is connected to.  The name is checked
    again here, so options that verify the chain but not the name (Twisted's
    C{ssl:} client endpoint without C{hostname=}) do not count.

    This is what Twisted's C{tls:} endpoint and C{optionsForClientTLS} do.
    """
    connection = tlsConnection(transport)
    if connection is None:
        return False
    if not connection.get_verify_mode() & SSL.VERIFY_PEER:
        return False
    peer = connection.get_peer_certificate()
    if peer is None:
        return False
    certificate = peer.to_cryptography()
    name = connection.get_servername()
    try:
        if name:
            verify_certificate_hostname(certificate, name.decode("ascii"))
        else:
            host = getattr(transport.getPeer(), "host", None)  # type: ignore[attr-defined]
            if not isinstance(host, str):
                return False
            verify_certificate_ip_address(certificate, host)
    except (CertificateError, VerificationError, ValueError, UnicodeError):
        return False
    return True


def channelBindings(transport: object, *, asServer: bool) -> dict[str, bytes]:
    """
    The channel binding data of a TLS connection, as this end computes it:
    C{tls-server-end-point} from the server's certificate (this end's own as
    the server, the peer's as the client) when its signature algorithm
    defines one, and C{tls-exporter} over TLS 1.3.

    @return: the data by type; empty without TLS or before the handshake.
    """
    connection = tlsConnection(transport)
    if connection is None:
        return {}
    bindings: dict[str, bytes] = {}
    certificate = (
        connection.get_certificate() if asServer else connection.get_peer_certificate()
    )
    if certificate is not None:
        endPoint = endPointHash(certificate.to_cryptography())
        if endPoint is not None:
            bindings[TLS_SERVER_END_POINT] = endPoint
    if connection.get_protocol_version_name() == _TLS13:
        # Fails only before the handshake: no exporter yet.
        with contextlib.suppress(SSL.Error):
            bindings[TLS_EXPORTER] = connection.export_keying_material(
                EXPORTER_LABEL, EXPORTER_BYTES, b""
            )
    return bindings


#: How a refusal to send over unverified TLS ends.
_VERIFY = (
    "needs TLS that verifies the server's certificate and host name"
    " (tls:HOST:PORT:trustRoots=DIR, or optionsForClientTLS)"
)


def checkSendable(keycard: Keycard, transport: object, towardBouncer: bool) -> None:
    """
    Refuse to send a keycard where a man in the middle could read what it
    must not show: toward the bouncer, a secret field only over TLS whose
    server the client verified (see L{serverVerified}), and a C{bearer}
    keycard not over TLS left unverified (plain TCP is a visible choice;
    unverified TLS only looks safe); toward the client, a secret field only
    over TLS.

    @raise InsecureTransport: if it may not be sent over C{transport}.
    """
    name = type(keycard).__name__
    if not towardBouncer:
        if keycard.carriesSecret(False) and not ISSLTransport.providedBy(transport):
            raise InsecureTransport(f"{name} carries a secret and needs TLS")
        return
    if keycard.carriesSecret(True):
        if not serverVerified(transport):
            raise InsecureTransport(f"{name} carries a secret and {_VERIFY}")
    elif (
        keycard.bearer
        and ISSLTransport.providedBy(transport)
        and not serverVerified(transport)
    ):
        raise InsecureTransport(f"{name} is a bearer credential and {_VERIFY}")
