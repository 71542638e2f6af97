"""
Trips to the SQLite store's thread on the bouncer service's login path,
counted with a runner in place of the thread (no timing): at most one per
login with the service's defaults (SQLite, tokens, throttling), the
release of the keycard of a client gone included.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import Keycard, KeycardState
from twisted_keycard.admin._operations import addUser
from twisted_keycard.bouncer import Bouncer
from twisted_keycard.passwords import HashPool
from twisted_keycard.scram import SCRAMAnswerer
from twisted_keycard.service import DataDir, Options, _tap
from twisted_keycard.store.sqlite import SQLiteStore
from twisted_keycard.store.sqlite._database import LATER


class ServiceTripsTests(SynchronousTestCase):
    def setUp(self) -> None:
        data = DataDir.create(Path(self.mktemp()) / "data")
        addUser(data.users, "alice", "correct horse")
        options = Options()
        options.parseOptions(["--data-dir", str(data.path)])
        self.clock = MemoryReactorClock()
        self.trips: list[Callable[[], Any]] = []

        def runner(call: Callable[[], Any]) -> Deferred[Any]:
            self.trips.append(call)
            return maybeDeferred(call)

        store = self.store = SQLiteStore(str(data.database), self.clock, runner=runner)
        self.addCleanup(store.close)
        # What twistd keycard-bouncer makes with its defaults, on this store.
        self.patch(_tap, "_reactor", lambda: self.clock)
        self.bouncer: Bouncer = _tap._bouncer(
            options, store, None, None, HashPool(runner=maybeDeferred)
        )
        self.assertIsNotNone(self.bouncer.throttler)
        self.assertIsNotNone(self.bouncer.tokens)
        self.bouncer.startService()
        self.addCleanup(self.bouncer.stopService)
        self.clock.advance(0)
        self.successResultOf(self.bouncer.started)

    def settle(self, d: Deferred[Keycard]) -> Keycard:
        """
        The result of C{d}, once the writes of this reactor turn are sent.
        """
        self.clock.advance(0)
        return self.successResultOf(d)

    def login(self, password: str = "correct horse") -> Deferred[Keycard]:
        answerer = SCRAMAnswerer("alice", password)
        first = answerer.start()
        first.address = "192.0.2.1"
        first.requesterName = "pb"
        challenged = self.settle(self.bouncer.authenticate(first))
        answered = answerer.answer(challenged)
        d = self.bouncer.authenticate(answered)
        self.clock.advance(0)
        return d

    def test_oneTripPerLogin(self) -> None:
        """
        A SCRAM login, both messages, makes one trip: the record of the
        keycard issued.  A failed login makes none (its count is shared
        with the next batch, once a follow interval).
        """
        self.successResultOf(self.login())
        for _ in range(3):
            before = len(self.trips)
            issued = self.successResultOf(self.login())
            self.assertIs(issued.state, KeycardState.AUTHENTICATED)
            self.assertEqual(len(self.trips) - before, 1)
        before = len(self.trips)
        self.failureResultOf(self.login("wrong"))
        self.assertEqual(len(self.trips), before)

    def test_releaseRidesWithNextLogin(self) -> None:
        """
        The release of a keycard whose client left waits a moment for the
        next write: with the next login's record, one trip for both.  With
        no other write, it goes alone within L{LATER} seconds.
        """
        keycardId = self.successResultOf(self.login()).id
        assert keycardId is not None
        before = len(self.trips)
        removed = self.bouncer.removeKeycardId(keycardId)
        self.clock.advance(0)
        self.assertNoResult(removed)
        self.successResultOf(self.login())
        self.assertTrue(self.successResultOf(removed))
        self.assertEqual(len(self.trips) - before, 1)
        record = self.successResultOf(self.store.get(keycardId))
        self.assertFalse(record is None or record.held)
        keycardId = self.successResultOf(self.login()).id
        assert keycardId is not None
        removed = self.bouncer.removeKeycardId(keycardId)
        before = len(self.trips)
        self.clock.advance(LATER)
        self.assertTrue(self.successResultOf(removed))
        self.assertEqual(len(self.trips) - before, 1)

    def test_throttleSharedOncePerInterval(self) -> None:
        """
        The throttle counts of failed logins go to the store at the next
        follow interval, with the rest of the upkeep: as many trips for
        five failed logins as for none.
        """
        interval = self.bouncer.upkeep.followInterval
        self.clock.advance(interval)
        before = len(self.trips)
        self.clock.advance(interval)
        idle = len(self.trips) - before
        for _ in range(5):
            self.failureResultOf(self.login("wrong"))
        before = len(self.trips)
        self.clock.advance(interval)
        self.assertEqual(len(self.trips) - before, idle)
        shared = self.successResultOf(self.store.shareThrottle("reader", [], 0, 100))
        self.assertEqual(len(shared.events), 2 * 5)
