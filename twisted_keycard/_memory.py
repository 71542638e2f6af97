"""
A store of issued keycards that lives in memory: for one process, and for
tests.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from ._record import IssuedKeycard
from .interfaces import IKeycardStore


def _index(index: dict[str, set[str]], key: str | None, keycardId: str) -> None:
    if key is not None:
        index.setdefault(key, set()).add(keycardId)


def _unindex(index: dict[str, set[str]], key: str | None, keycardId: str) -> None:
    if key is None:
        return
    ids = index.get(key)
    if ids is not None:
        ids.discard(keycardId)
        if not ids:
            del index[key]


@implementer(IKeycardStore)
@attrs.define
class MemoryStore:
    """
    An L{IKeycardStore} in a dictionary, indexed by avatar and by requester.

    Nothing survives the process: use it in tests and where a restart may
    forget every issued keycard.
    """

    _records: dict[str, IssuedKeycard] = attrs.field(factory=dict)
    _byAvatar: dict[str, set[str]] = attrs.field(factory=dict)
    _byRequester: dict[str, set[str]] = attrs.field(factory=dict)

    def add(self, record: IssuedKeycard) -> Deferred[None]:
        if record.keycardId in self._records:
            return fail(KeyError(record.keycardId))
        self._records[record.keycardId] = record
        _index(self._byAvatar, record.avatarId, record.keycardId)
        _index(self._byRequester, record.requesterName, record.keycardId)
        return succeed(None)

    def get(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        return succeed(self._records.get(keycardId))

    def remove(self, keycardId: str) -> Deferred[IssuedKeycard | None]:
        record = self._records.pop(keycardId, None)
        if record is not None:
            _unindex(self._byAvatar, record.avatarId, keycardId)
            _unindex(self._byRequester, record.requesterName, keycardId)
        return succeed(record)

    def renew(self, keycardId: str, expires: float) -> Deferred[IssuedKeycard | None]:
        record = self._records.get(keycardId)
        if record is None:
            return succeed(None)
        record = attrs.evolve(record, expires=expires)
        self._records[keycardId] = record
        return succeed(record)

    def _select(self, ids: Iterable[str]) -> Deferred[list[IssuedKeycard]]:
        return succeed([self._records[i] for i in sorted(ids)])

    def byAvatar(self, avatarId: str) -> Deferred[list[IssuedKeycard]]:
        return self._select(self._byAvatar.get(avatarId, ()))

    def byRequester(self, requesterName: str) -> Deferred[list[IssuedKeycard]]:
        return self._select(self._byRequester.get(requesterName, ()))

    def expiredBefore(self, when: float) -> Deferred[list[IssuedKeycard]]:
        return self._select(k for k, r in self._records.items() if r.expires <= when)

    def count(self) -> Deferred[int]:
        return succeed(len(self._records))
