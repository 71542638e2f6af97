"""
What one end of a connection knows of the TLS under it: whether a client
checked the server's certificate, and the connection's channel binding
data.

Both read the pyOpenSSL connection Twisted's TLS transports expose through
C{ISSLTransport}'s C{getHandle()}; any other transport has no TLS here.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)
from twisted.internet.interfaces import ISSLTransport

from twisted_keycard.error import InsecureTransport
from twisted_keycard.keycard._channel import (
    EXPORTER_BYTES,
    EXPORTER_LABEL,
    TLS_EXPORTER,
    TLS_SERVER_END_POINT,
    endPointHash,
)

if TYPE_CHECKING:
    from twisted_keycard.keycard._keycard import Keycard

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
