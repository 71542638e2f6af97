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
from collections.abc import Mapping, MutableMapping, Sequence

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
class NameKeys:
    """
    What one name's login is checked against, made when the file is read,
    so that a login does the same few steps for every name, known or not.

    @ivar keys: the name's keys taken from any address.
    @ivar padding: mock keys, so that with C{keys} and C{restricted} every
        kind has its count.
    @ivar restricted: the name's keys with C{from=}, each with a mock key
        of its kind to check instead when the client's address is not
        allowed.
    """

    keys: tuple[PublicKey, ...] = attrs.field(repr=False)
    padding: tuple[PublicKey, ...] = attrs.field(repr=False)
    restricted: tuple[tuple[AuthorizedKey, PublicKey], ...] = attrs.field(repr=False)

    def select(self, address: str | None) -> tuple[list[PublicKey], list[PublicKey]]:
        """
        The keys whose check counts for a client at C{address}, and the
        mock keys to check besides them.
        """
        keys, padding = list(self.keys), list(self.padding)
        for line, mock in self.restricted:
            if line.allows(address):
                keys.append(line.key)
            else:
                padding.append(mock)
        return keys, padding


@attrs.frozen
class MockKeys:
    """
    How many keys of each kind every login is checked against, a mock key
    of each kind, and what each name's login is checked against.

    @ivar counts: by kind, the most keys of that kind one name has (one
        Ed25519 key for a file without keys).
    @ivar keys: by kind, a key nobody holds.
    @ivar names: by name, its L{NameKeys}.
    @ivar unknown: the L{NameKeys} of a name not in the file: only mock
        keys.
    """

    counts: Mapping[KeyKind, int]
    keys: Mapping[KeyKind, PublicKey] = attrs.field(repr=False)
    names: Mapping[str, NameKeys] = attrs.field(repr=False)
    unknown: NameKeys = attrs.field(repr=False)

    @classmethod
    def of(
        cls,
        entries: Mapping[str, Sequence[AuthorizedKey]],
        made: MutableMapping[KeyKind, PublicKey],
    ) -> MockKeys:
        """
        The counts of a file whose names have the lines of C{entries}
        (C{cert-authority} lines do not count: they check certificates, not
        signatures).

        @param made: mock keys made before, by kind; new ones are added to
            it, so a file read again makes only keys of new kinds.
        """
        signing = {
            name: [a for a in lines if not a.certAuthority]
            for name, lines in entries.items()
        }
        counts: dict[KeyKind, int] = {}
        for lines in signing.values():
            for kind, count in Counter(keyKind(a.key) for a in lines).items():
                counts[kind] = max(count, counts.get(kind, 0))
        if not counts:
            counts[ED25519] = 1
        for kind in counts:
            if kind not in made:
                made[kind] = mockKeyOf(kind)
        keys = {kind: made[kind] for kind in counts}
        # Names with keys of the same kinds share one padding.
        paddings: dict[frozenset[tuple[KeyKind, int]], tuple[PublicKey, ...]] = {}

        def nameKeys(lines: Sequence[AuthorizedKey]) -> NameKeys:
            have = Counter(keyKind(a.key) for a in lines)
            padding = paddings.setdefault(
                frozenset(have.items()), tuple(_padding(counts, keys, have))
            )
            return NameKeys(
                tuple(a.key for a in lines if a.fromPatterns is None),
                padding,
                tuple(
                    (a, keys[keyKind(a.key)])
                    for a in lines
                    if a.fromPatterns is not None
                ),
            )

        return cls(
            counts,
            keys,
            {name: nameKeys(lines) for name, lines in signing.items()},
            nameKeys(()),
        )

    def select(
        self, name: str, address: str | None
    ) -> tuple[list[PublicKey], list[PublicKey]]:
        """
        The keys whose check counts for C{name} from C{address} (none for a
        name not in the file), and the mock keys to check besides them.
        """
        return self.names.get(name, self.unknown).select(address)

    def padding(self, keys: Sequence[PublicKey]) -> list[PublicKey]:
        """
        The mock keys to check besides C{keys}, so that every kind has its
        count.
        """
        return _padding(self.counts, self.keys, Counter(keyKind(k) for k in keys))


def _padding(
    counts: Mapping[KeyKind, int],
    mocks: Mapping[KeyKind, PublicKey],
    have: Mapping[KeyKind, int],
) -> list[PublicKey]:
    return [
        mock
        for kind, mock in mocks.items()
        for _ in range(counts[kind] - have.get(kind, 0))
    ]
