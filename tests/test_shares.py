"""
Tests for L{twisted_keycard._shares}: fair shares of a bounded table.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard._shares import FairShares, GroupSizes


class GroupSizesTests(SynchronousTestCase):
    def test_groupSizes(self) -> None:
        sizes: GroupSizes[str] = GroupSizes()
        self.assertEqual(sizes.largest(), (None, 0))
        sizes.add("a", 1)
        sizes.add("b", 1)
        sizes.add("b", 1)
        self.assertEqual(sizes.largest(), ("b", 2))
        sizes.add("b", -1)
        self.assertEqual(sizes.largest()[1], 1)
        sizes.add("a", -1)
        sizes.add("b", -1)
        self.assertEqual(sizes.largest(), (None, 0))
        self.assertEqual(sizes["a"], 0)


class FairSharesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.table: FairShares[str, str, int] = FairShares(size=6, perOwner=4)

    def test_bounds(self) -> None:
        """
        Both bounds must be positive integers.
        """
        for size, perOwner in [(0, 1), (1, 0), (True, 1), (1, 1.5)]:
            self.assertRaises(ValueError, FairShares, size, perOwner)

    def test_ownNewestPushesOwnOldest(self) -> None:
        """
        An owner at its share pushes out its own oldest entry, never
        another owner's.
        """
        self.table.put("b1", "bob", 0)
        for i in range(10):
            self.table.put(f"a{i}", "alice", i)
        self.assertEqual(self.table.owned("alice"), 4)
        self.assertEqual(self.table.get("b1"), 0)
        self.assertEqual(sorted(self.table), ["a6", "a7", "a8", "a9", "b1"])
        self.assertEqual(self.table.put("a10", "alice", 10), [("a6", 6)])

    def test_fullTableLargestGivesWay(self) -> None:
        """
        When the table is full, a new owner's entry pushes out the oldest of
        the owner holding the most; an owner holding as many as any pushes
        out its own.
        """
        for i in range(3):
            self.table.put(f"a{i}", "alice", i)
            self.table.put(f"b{i}", "bob", i)
        self.assertEqual(len(self.table), 6)
        # Carol holds none: one of the largest gives way.
        pushed = self.table.put("c0", "carol", 0)
        self.assertEqual(len(pushed), 1)
        self.assertIn(pushed[0][0], ("a0", "b0"))
        # Whoever gave way holds 2; the other 3, and now gives way.
        loser = pushed[0][0][0]
        other = "b" if loser == "a" else "a"
        self.assertEqual(self.table.put("c1", "carol", 1), [(f"{other}0", 0)])
        # Carol, alice and bob hold 2 each: carol pushes out her own.
        self.assertEqual(self.table.put("c2", "carol", 2), [("c0", 0)])
        self.assertEqual(len(self.table), 6)

    def test_usedGoesLast(self) -> None:
        """
        An entry L{FairShares.used} goes after its owner's others.
        """
        for i in range(4):
            self.table.put(f"a{i}", "alice", i)
        self.table.used("a0")
        self.assertEqual(self.table.put("a4", "alice", 4), [("a1", 1)])

    def test_replaceAndPop(self) -> None:
        """
        Putting a key again replaces its entry; a popped entry is gone from
        its owner's count.
        """
        self.table.put("k", "alice", 1)
        self.assertEqual(self.table.put("k", "alice", 2), [("k", 1)])
        self.assertEqual(self.table.owned("alice"), 1)
        self.assertEqual(self.table.pop("k"), 2)
        self.assertIsNone(self.table.pop("k"))
        self.assertEqual(self.table.owned("alice"), 0)
        self.assertNotIn("k", self.table)
