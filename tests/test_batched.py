"""
Tests for L{twisted_keycard.store._interfaces}.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard.store._interfaces import BatchedLookups


class BatchedLookupsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.queries: list[tuple[list[str], Deferred[set[str]]]] = []

        def query(keys: list[str]) -> Deferred[set[str]]:
            d: Deferred[set[str]] = Deferred()
            self.queries.append((keys, d))
            return d

        self.lookups = BatchedLookups(query, batch=2)

    def test_waitingShareTheNextQuery(self) -> None:
        """
        Lookups made while a query runs wait for the next one, which asks
        for at most C{batch} distinct keys; each lookup gets its answer.
        """
        first = self.lookups.lookUp("a")
        rest = [self.lookups.lookUp(k) for k in ["b", "c", "b", "d"]]
        self.assertEqual([keys for keys, _ in self.queries], [["a"]])
        self.queries[0][1].callback({"a"})
        self.assertIs(self.successResultOf(first), True)
        self.assertEqual(self.queries[1][0], ["b", "c"])
        self.queries[1][1].callback({"c"})
        self.assertEqual(self.queries[2][0], ["d"])
        self.queries[2][1].callback(set())
        self.assertEqual(
            [self.successResultOf(d) for d in rest], [False, True, False, False]
        )

    def test_failureFailsItsBatchOnly(self) -> None:
        """
        A failed query fails the lookups it answers; the next batch is
        still asked.
        """
        first = self.lookups.lookUp("a")
        second = self.lookups.lookUp("b")
        self.queries[0][1].errback(RuntimeError("store lost"))
        self.failureResultOf(first, RuntimeError)
        self.queries[1][1].callback({"b"})
        self.assertIs(self.successResultOf(second), True)
