"""
The signatures of public-key keycards: what each key type signs with
(Ed25519; ECDSA and RSA PKCS#1 v1.5 with SHA-256), and private keys read
from OpenSSH or PEM files.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from twisted_keycard._authorizedkeys import PublicKey

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def signWith(key: PrivateKey, message: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(hashes.SHA256()))
    return key.sign(message, padding.PKCS1v15(), hashes.SHA256())


def verifyWith(key: PublicKey, signature: bytes, message: bytes) -> bool:
    """
    Whether C{signature} is C{key}'s of C{message}.  The work depends on
    the key's kind and the signature, never on which key of that kind it
    is (see L{_rsaInRange}).
    """
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            inRange, signature = _rsaInRange(key, signature)
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
            return inRange
    except InvalidSignature:
        return False
    return True


def _rsaInRange(key: rsa.RSAPublicKey, signature: bytes) -> tuple[bool, bytes]:
    """
    OpenSSL refuses at once a signature not below the key's modulus, so a
    stranger who knows a user's public key could send one just below it
    and tell the user's key (checked) from a mock key (refused at once).
    Such a signature is reduced, checked all the same, and refused.

    @return: whether C{signature} is below the modulus, and the signature
        to check.
    """
    modulus = key.public_numbers().n
    value = int.from_bytes(signature, "big")
    if value < modulus:
        return True, signature
    return False, (value % modulus).to_bytes(len(signature), "big")


def loadPrivateKey(data: bytes, password: bytes | None = None) -> PrivateKey:
    """
    Load an OpenSSH (or PEM) private key.

    @raise ValueError: for a key that is not Ed25519, ECDSA or RSA.
    """
    try:
        key = serialization.load_ssh_private_key(data, password)
    except ValueError:
        key = serialization.load_pem_private_key(data, password)  # type: ignore[assignment]
    if not isinstance(
        key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    ):
        raise ValueError("only Ed25519, ECDSA and RSA keys are taken")
    return key
