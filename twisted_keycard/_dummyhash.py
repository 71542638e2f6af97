"""
The hash a password file checks an unknown user's password against: a
hash of a password nobody knows, in the scheme and with the cost most of
the file's hashes have, so that an unknown user costs what a user costs.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, MutableMapping

from passlib.context import CryptContext

from twisted_keycard._mocks import mostCommon

#: A scheme and its settings (rounds, ident, memory, salt and digest sizes).
HashShape = tuple[str, tuple[tuple[str, object], ...]]

#: Settings read from a hash as they are, when its scheme has them.
_SETTINGS = ("rounds", "ident", "memory_cost", "parallelism", "type")


def hashShape(context: CryptContext, hashed: str) -> HashShape | None:
    """
    The scheme and settings of C{hashed}, or C{None} if C{context} does not
    take it (a locked account, a malformed hash).
    """
    scheme = context.identify(hashed, required=False)
    if scheme is None:
        return None
    handler = context.handler(scheme)
    try:
        parsed = handler.from_string(hashed)
    except (ValueError, TypeError):
        return None
    kwds = handler.setting_kwds
    settings = {name: getattr(parsed, name) for name in _SETTINGS if name in kwds}
    if "salt_size" in kwds and parsed.salt:
        settings["salt_size"] = len(parsed.salt)
    if "digest_size" in kwds and parsed.checksum:
        settings["digest_size"] = len(parsed.checksum)
    return scheme, tuple(sorted(settings.items()))


def dummyHash(
    context: CryptContext,
    hashes: Iterable[str],
    made: MutableMapping[HashShape | None, str],
) -> str:
    """
    A hash of a random password in the shape most of C{hashes} have (the
    context's default scheme when none is taken).  Slow: run it where a
    hash may be computed.

    @param made: dummy hashes made before, by shape; a new one is added,
        so a file read again costs a hash only when its shape changed.
    """
    shape = mostCommon((s for h in hashes if (s := hashShape(context, h))), None)
    if shape not in made:
        made[shape] = _hashIn(context, shape, secrets.token_hex(16))
    return made[shape]


def _hashIn(context: CryptContext, shape: HashShape | None, password: str) -> str:
    if shape is not None:
        scheme, settings = shape
        try:
            hashed: str = context.handler(scheme).using(**dict(settings)).hash(password)
            return hashed
        except (ValueError, TypeError):
            pass  # settings the scheme reads but will not write
    default: str = context.hash(password)
    return default
