"""
What checkers show for a name they do not know, so that nobody can tell it
from a known one: a challenge made from a secret the bouncers share (the
same for a name on every bouncer, before and after a restart) and shaped
like most of the real entries of the file (see C{docs/security.rst}).
"""

from __future__ import annotations

import hmac
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator, Mapping
from typing import Generic, TypeVar

import attrs
from zope.interface import Interface

_T = TypeVar("_T")
_H = TypeVar("_H", bound=Hashable)
_M = TypeVar("_M")

#: Bytes of a mock secret made by L{twisted_keycard.store} backends.
SECRET_BYTES = 32


class IMockSecretTaker(Interface):
    """
    A checker whose mock challenges for unknown names are made from a
    secret: the bouncer service hands it the secret its store keeps, so
    bouncers sharing the store (and one bouncer before and after a
    restart) show the same challenge for a name.
    """

    def setMockSecret(secret: bytes) -> None:
        """
        Make mock challenges from C{secret} from now on.

        @param secret: at least 16 random bytes, kept as secret as the
            token signing keys (whoever has it can tell known names from
            unknown ones).
        @raise ValueError: if C{secret} is shorter than 16 bytes.
        """


def mockSubkey(secret: bytes, purpose: bytes) -> bytes:
    """
    A key for one use of the mock secret, so that two kinds (SCRAM and SRP
    salts) never show the same bytes for one name.

    @raise ValueError: if C{secret} is shorter than 16 bytes.
    """
    if len(secret) < 16:
        raise ValueError("a mock secret has at least 16 bytes")
    return hmac.digest(secret, b"twisted-keycard mock\0" + purpose, "sha256")


def mockBytes(key: bytes, name: str, length: int) -> bytes:
    """
    C{length} bytes that look random and are the same for C{name} whenever
    C{key} is: HMAC-SHA256 of the name and a counter, as many blocks as
    needed.
    """
    data = name.encode("utf-8", "surrogatepass")
    if length <= 32:
        # One block, the common case (a 16-byte salt).
        return hmac.digest(key, b"\0\0\0\0" + data, "sha256")[:length]
    blocks = (length + 31) // 32
    return b"".join(
        hmac.digest(key, i.to_bytes(4, "big") + data, "sha256") for i in range(blocks)
    )[:length]


def mostCommon(values: Iterable[_H], default: _H) -> _H:
    """
    The value most C{values} have (of equal counts, the first seen), or
    C{default} if there are none.
    """
    found = Counter(values).most_common(1)
    return found[0][0] if found else default


@attrs.frozen
class WithMocks(Mapping[str, _T], Generic[_T, _M]):
    """
    A file's entries and what its mock challenges need (made from them in
    the thread that parsed the file), put in use together.

    @ivar entries: the entries by name.
    @ivar mocks: the mock material.
    """

    entries: Mapping[str, _T]
    mocks: _M

    def __getitem__(self, name: str) -> _T:
        return self.entries[name]

    def get(self, name: str, default: _T | None = None) -> _T | None:  # type: ignore[override]
        # The mapping's own look-up: Mapping.get would raise and catch a
        # KeyError for an unknown name only, which takes longer.
        return self.entries.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def mocksOf(entries: Mapping[str, object], fallback: _M) -> _M:
    """
    The mock material that came with C{entries}, or C{fallback} for entries
    given in memory.
    """
    if isinstance(entries, WithMocks):
        found: _M = entries.mocks
        return found
    return fallback
