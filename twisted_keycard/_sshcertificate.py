"""
OpenSSH user certificates (C{*-cert-v01@openssh.com}), checked against the
certificate authorities a keys file trusts for a name (its
C{cert-authority} lines), as sshd checks them, with two differences: a
certificate must name its principals (OpenSSH takes one that names none
for any user), and its only critical option taken is C{source-address},
enforced; any other (C{force-command}, C{verify-required}) refuses it.
Extensions (C{permit-pty}, ...) concern SSH sessions and are ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization.ssh import (
    SSHCertificate,
    SSHCertificateType,
    load_ssh_public_identity,
)

from twisted_keycard._authorizedkeys import (
    CERT_SUFFIX,
    AuthorizedKey,
    PublicKey,
    checkKeyType,
)
from twisted_keycard.keycard._address import normalizeAddress

#: Characters of a certificate line a keycard may carry, at most.
CERTIFICATE_LENGTH = 8192


class CertificateRefused(Exception):
    """
    Raised when a certificate does not hold for a login; the message says
    why, for the server's log only.
    """


def loadCertificate(text: str | bytes) -> SSHCertificate:
    """
    Read a certificate in OpenSSH's one-line format (C{ssh-keygen -s}
    writes it to C{*-cert.pub}).

    @raise ValueError: for anything else.
    """
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        certificate = load_ssh_public_identity(data.strip())
    except (ValueError, TypeError, IndexError, UnsupportedAlgorithm):
        raise ValueError("not an OpenSSH certificate") from None
    if not isinstance(certificate, SSHCertificate):
        raise ValueError(f"not an OpenSSH certificate (*{CERT_SUFFIX})")
    return certificate


def certificateOf(text: str | bytes, key: PublicKey) -> str:
    """
    A certificate of C{key}, in one-line form without its comment.

    @raise ValueError: if C{text} is not a certificate of C{key}.
    """
    certificate = loadCertificate(text)
    if _openssh(checkKeyType(certificate.public_key())) != _openssh(key):
        raise ValueError("the certificate is not one of this key")
    return certificate.public_bytes().decode("ascii")


def _openssh(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )


def certifiedKey(
    certificate: SSHCertificate,
    authorities: Sequence[AuthorizedKey],
    name: str,
    address: str | None,
    now: float,
) -> PublicKey:
    """
    The key a certificate certifies for logging in as C{name} from
    C{address} at time C{now}.

    @param authorities: the name's lines; only C{cert-authority} lines whose
        C{from=} allows C{address} count.
    @raise CertificateRefused: if the certificate is not signed by one of
        them, not a valid user certificate for C{name} now, or has a
        critical option not taken.
    """
    try:
        signer = _openssh(checkKeyType(certificate.signature_key()))
    except ValueError:
        raise CertificateRefused("not signed by a CA trusted for this name") from None
    # Checked first, whoever signed: checked only for a trusted signer, it
    # would take longer for a name that trusts the signer, telling whoever
    # holds a certificate from that CA which names exist.
    try:
        certificate.verify_cert_signature()
    except (InvalidSignature, UnsupportedAlgorithm):
        raise CertificateRefused("bad CA signature") from None
    trusted = [
        a
        for a in authorities
        if a.certAuthority and a.allows(address) and _openssh(a.key) == signer
    ]
    if not trusted:
        raise CertificateRefused("not signed by a CA trusted for this name")
    if certificate.type is not SSHCertificateType.USER:
        raise CertificateRefused("not a user certificate")
    if now < certificate.valid_after:
        raise CertificateRefused("not valid yet")
    if now >= certificate.valid_before:
        raise CertificateRefused("expired")
    named = set(certificate.valid_principals)
    if not any(
        p.encode("utf-8") in named for a in trusted for p in a.principals or (name,)
    ):
        raise CertificateRefused("no principal allowed here")
    for option, value in certificate.critical_options.items():
        if option != b"source-address":
            raise CertificateRefused("critical option not supported")
        if not _sourceAllows(value, address):
            raise CertificateRefused("source-address does not allow the client")
    try:
        return checkKeyType(certificate.public_key())
    except ValueError as e:
        raise CertificateRefused(str(e)) from None


def _sourceAllows(value: bytes, address: str | None) -> bool:
    """
    Whether C{source-address}'s comma-separated networks hold C{address};
    one that does not parse holds none.
    """
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(normalizeAddress(address))
        networks = [
            ipaddress.ip_network(n.strip(), strict=False)
            for n in value.decode("ascii").split(",")
        ]
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in networks)
