"""
Channel binding (RFC 5056): data that names one TLS connection, so that an
exchange run over it proves that no relay sits between the two ends.

The requester computes it from its own side of the connection and records
it in a keycard field the client never writes (L{formatBindings} is its
wire form); a client computes it from its side and binds its answer to it.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

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
