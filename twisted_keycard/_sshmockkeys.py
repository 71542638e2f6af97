"""
Keys nobody holds, that the sshkeys checker checks a signature against
besides a name's own keys, so that every login costs the same whatever the
name: as many keys of each kind (type and size) as the name in the file
with the most keys of that kind has.  A name with fewer keys of a kind,
one whose keys a C{from=} option leaves out, and an unknown name are
padded with mock keys of that kind; the results of mock keys are never
taken.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterable, Mapping, MutableMapping, Sequence

import attrs
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from twisted_keycard._authorizedkeys import AuthorizedKey, PublicKey

#: A kind of key: its type and size (the curve's for ECDSA).  Checks of
#: keys of one kind cost the same.
KeyKind = tuple[str, int]

ED25519: KeyKind = ("ed25519", 256)


def keyKind(key: PublicKey) -> KeyKind:
    """
    The kind of C{key}.
    """
    if isinstance(key, ed25519.Ed25519PublicKey):
        return ED25519
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ("ecdsa", key.key_size)
    return ("rsa", key.key_size)


_CURVES = {c.key_size: c for c in (ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1())}


def mockKeyOf(kind: KeyKind) -> PublicKey:
    """
    A new key of C{kind} whose private key nobody has: for RSA a random
    modulus of the size (no one knows its factors; checking against it
    costs what checking against a real key of that size costs).

    @raise ValueError: for a kind the keys file does not take.
    """
    name, size = kind
    if kind == ED25519:
        return ed25519.Ed25519PrivateKey.generate().public_key()
    if name == "ecdsa" and size in _CURVES:
        return ec.generate_private_key(_CURVES[size]).public_key()
    if name == "rsa" and size >= 1024:
        modulus = secrets.randbits(size) | (1 << (size - 1)) | 1
        return rsa.RSAPublicNumbers(65537, modulus).public_key()
    raise ValueError(f"no mock key of kind {kind!r}")


@attrs.frozen
class MockKeys:
    """
    How many keys of each kind every login is checked against, and a mock
    key of each kind.

    @ivar counts: by kind, the most keys of that kind one name has (one
        Ed25519 key for a file without keys).
    @ivar keys: by kind, a key nobody holds.
    """

    counts: Mapping[KeyKind, int]
    keys: Mapping[KeyKind, PublicKey] = attrs.field(repr=False)

    @classmethod
    def of(
        cls,
        lines: Iterable[Sequence[AuthorizedKey]],
        made: MutableMapping[KeyKind, PublicKey],
    ) -> MockKeys:
        """
        The counts of a file whose names have C{lines} (C{cert-authority}
        lines do not count: they check certificates, not signatures).

        @param made: mock keys made before, by kind; new ones are added to
            it, so a file read again makes only keys of new kinds.
        """
        counts: dict[KeyKind, int] = {}
        for authorized in lines:
            found = Counter(keyKind(a.key) for a in authorized if not a.certAuthority)
            for kind, count in found.items():
                counts[kind] = max(count, counts.get(kind, 0))
        if not counts:
            counts[ED25519] = 1
        for kind in counts:
            if kind not in made:
                made[kind] = mockKeyOf(kind)
        return cls(counts, {kind: made[kind] for kind in counts})

    def padding(self, keys: Sequence[PublicKey]) -> list[PublicKey]:
        """
        The mock keys to check besides C{keys}, so that every kind has its
        count.
        """
        have = Counter(keyKind(k) for k in keys)
        return [
            mock
            for kind, mock in self.keys.items()
            for _ in range(self.counts[kind] - have[kind])
        ]
