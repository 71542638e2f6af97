"""
A self-signed certificate for development, so that C{ssl:}/C{tls:}
endpoints work out of the box.  Never use it in production: get a
certificate from your own certificate authority.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from twisted_keycard._secretfiles import makePrivateDirectory, writePrivateFile

VALID_DAYS = 365


def makeDevCertificate(hostname: str, serverPem: Path, trustPem: Path) -> None:
    """
    Write a new self-signed certificate for C{hostname}: key and certificate
    to C{serverPem} (mode 0600, in a directory of mode 0700) for the server,
    certificate alone to C{trustPem} for clients to trust.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certPem = certificate.public_bytes(serialization.Encoding.PEM)
    keyPem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    makePrivateDirectory(serverPem.parent)
    writePrivateFile(serverPem, keyPem + certPem)
    trustPem.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    trustPem.write_bytes(certPem)
