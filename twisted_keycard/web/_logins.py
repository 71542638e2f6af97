"""
What the guard holds between requests: cookie sessions, and the keycards
issued for repeated credentials (a Bearer token, Basic user and password),
each in a table bounded in size, by keycard id for the bouncer's expiries.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable

import attrs

#: Random bytes in a session cookie and in a CSRF token.
SECRET_BYTES = 32


@attrs.define(eq=False)
class HeldLogin:
    """
    A keycard the guard holds for a client.

    @ivar keycardId: the keycard's id.
    @ivar avatarId: its avatar.
    @ivar expires: POSIX time after which it no longer counts, whatever the
        bouncer says.
    @ivar csrfToken: for a session, the token its state-changing requests
        must carry; C{None} otherwise.
    @ivar tokenId: for a Bearer login, the keycard id of the token
        presented (the parent of C{keycardId}).
    """

    keycardId: str
    avatarId: str
    expires: float
    csrfToken: str | None = attrs.field(default=None, repr=False)
    tokenId: str | None = None


class _Table:
    """
    Held logins by key, least recently used first, at most C{size}.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a table holds at least one login")
        self.size = size
        self.entries: OrderedDict[bytes, HeldLogin] = OrderedDict()

    def get(self, key: bytes) -> HeldLogin | None:
        entry = self.entries.get(key)
        if entry is not None:
            self.entries.move_to_end(key)
        return entry

    def put(self, key: bytes, entry: HeldLogin) -> list[HeldLogin]:
        """
        @return: the entries pushed out to make room.
        """
        pushed = []
        old = self.entries.pop(key, None)
        if old is not None:
            pushed.append(old)
        while len(self.entries) >= self.size:
            pushed.append(self.entries.popitem(last=False)[1])
        self.entries[key] = entry
        return pushed


class HeldLogins:
    """
    The guard's sessions (by the SHA-256 of their cookie, so the table holds
    no cookie) and cached credentials (by an HMAC under a key of this
    process, so it holds no token or password), with an index by keycard id.

    @ivar onDropped: called with each login pushed out of a full table (its
        keycard should be removed from the bouncer).
    """

    def __init__(
        self,
        maxSessions: int,
        maxCached: int,
        onDropped: Callable[[HeldLogin], object],
    ) -> None:
        self._sessions = _Table(maxSessions)
        self._cached = _Table(maxCached)
        self._byId: dict[str, tuple[_Table, bytes]] = {}
        self._key = secrets.token_bytes(SECRET_BYTES)
        self.onDropped = onDropped

    def __len__(self) -> int:
        return len(self._byId)

    def keycardIds(self) -> list[str]:
        return list(self._byId)

    @staticmethod
    def sessionKey(cookie: str) -> bytes:
        return hashlib.sha256(cookie.encode("utf-8")).digest()

    def credentialKey(self, *parts: str) -> bytes:
        """
        The key of cached credentials: an HMAC of C{parts}, which must
        include everything the keycard depends on (the client address).
        """
        data = b"\0".join(p.encode("utf-8", "surrogatepass") for p in parts)
        return hmac.digest(self._key, data, "sha256")

    def newSession(self, keycardId: str, avatarId: str, expires: float) -> str:
        """
        Hold a session for a keycard.

        @return: the cookie value that names it.
        """
        cookie = secrets.token_urlsafe(SECRET_BYTES)
        login = HeldLogin(
            keycardId, avatarId, expires, secrets.token_urlsafe(SECRET_BYTES)
        )
        self._put(self._sessions, self.sessionKey(cookie), login)
        return cookie

    def session(self, cookie: str) -> HeldLogin | None:
        return self._sessions.get(self.sessionKey(cookie))

    def cache(self, key: bytes, login: HeldLogin) -> None:
        self._put(self._cached, key, login)

    def cached(self, key: bytes) -> HeldLogin | None:
        return self._cached.get(key)

    def _put(self, table: _Table, key: bytes, login: HeldLogin) -> None:
        for pushed in table.put(key, login):
            self._byId.pop(pushed.keycardId, None)
            self.onDropped(pushed)
        self._byId[login.keycardId] = (table, key)

    def drop(self, keycardIds: Iterable[str]) -> list[HeldLogin]:
        """
        Forget the logins of these keycards (ended by the bouncer, or by a
        logout).

        @return: the logins forgotten.
        """
        dropped = []
        for keycardId in keycardIds:
            found = self._byId.pop(keycardId, None)
            if found is not None:
                table, key = found
                login = table.entries.pop(key, None)
                if login is not None:
                    dropped.append(login)
        return dropped
