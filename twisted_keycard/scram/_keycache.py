"""
The client's cache of keys derived from one password (RFC 5802, section
5.1), so that logging in again costs no PBKDF2.
"""

from __future__ import annotations

from twisted_keycard.scram._crypto import clientKey, saltedPassword, serverKey

#: Salts whose keys a L{SCRAMKeyCache} remembers, at most.
CACHE_SIZE = 16


class SCRAMKeyCache:
    """
    Remembers the client and server keys derived from a password for a salt
    and iteration count, the oldest forgotten first.  Share one among the
    answerers of one password; keep it as secret as the password.
    """

    def __init__(self, size: int = CACHE_SIZE) -> None:
        """
        @param size: how many salts to remember, at least 1.
        """
        if size < 1:
            raise ValueError("a key cache holds at least one entry")
        self._size = size
        self._keys: dict[tuple[bytes, int], tuple[bytes, bytes]] = {}

    def __repr__(self) -> str:
        return f"<SCRAMKeyCache of {len(self._keys)}>"

    def keys(self, password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
        """
        The client key and the server key of C{password} for this salt and
        iteration count.

        @raise ValueError: if SASLprep refuses the password.
        """
        found = self._keys.get((salt, iterations))
        if found is None:
            salted = saltedPassword(password, salt, iterations)
            found = clientKey(salted), serverKey(salted)
            if len(self._keys) >= self._size:
                self._keys.pop(next(iter(self._keys)))
            self._keys[(salt, iterations)] = found
        return found
