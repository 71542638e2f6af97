"""
Lookups that arrive together answered by one query: a store's revocation
checks, on SQLite (one C{IN (...)} query in its thread) and on Redis (one
script).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure


class BatchedLookups:
    """
    Answers "is this key in the set?" in batches: lookups that arrive while
    a query runs wait for the next one, of at most C{batch} keys, which
    answers them all.  A failed query fails every lookup it answers.
    """

    def __init__(
        self, query: Callable[[list[str]], Deferred[set[str]]], batch: int
    ) -> None:
        """
        @param query: given distinct keys, fires with those that are in the
            set.
        @param batch: keys one query asks for, at most.
        """
        self._query = query
        self._batch = batch
        self._waiting: dict[str, list[Deferred[bool]]] = {}
        self._querying = False

    def lookUp(self, key: str) -> Deferred[bool]:
        """
        Whether C{key} is in the set.
        """
        d: Deferred[bool] = Deferred()
        self._waiting.setdefault(key, []).append(d)
        if not self._querying:
            self._queryWaiting()
        return d

    def _queryWaiting(self) -> None:
        keys = list(self._waiting)[: self._batch]
        waiters = {k: self._waiting.pop(k) for k in keys}
        self._querying = True

        def answer(found: set[str] | Failure) -> None:
            self._querying = False
            for key, ds in waiters.items():
                for d in ds:
                    if isinstance(found, Failure):
                        d.errback(found)
                    else:
                        d.callback(key in found)
            if self._waiting:
                self._queryWaiting()

        self._query(keys).addBoth(answer)
