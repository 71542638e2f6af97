"""
Tests for bouncers' leases, with two bouncers on one store and a L{Clock}:
the seats and per-avatar places of a bouncer that stopped renewing its
lease (killed) are freed once the lease runs out, and not before.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import Bouncer, MemoryStore
from twisted_keycard.bouncer import Quota, Upkeep
from twisted_keycard.bouncer._held import Lease
from twisted_keycard.error import QuotaExceeded
from twisted_keycard.keycard._keycard import Keycard
from twisted_keycard.service._datadir import RunLeases
from twisted_keycard.service._startup import LeaseRecord
from twisted_keycard.store.sqlite._store import SQLiteStore

from ._passphrase import PassphraseAnswerer, PassphraseChecker, PassphraseKeycard
from .test_tokens_bouncer import Requester

if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object

FOLLOW = 1.0
LEASE = 5.0
USERS = {"alice": "pw", "bob": "pw", "carol": "pw"}


class _Leases(_Base):
    """
    Mixed into a test case whose C{makeStore} gives the shared store.
    """

    def makeStore(self) -> Any:
        raise NotImplementedError()

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000.0)
        self.store = self.makeStore()
        self.requester = Requester()

    def bouncer(self, name: str, quota: Quota) -> Bouncer:
        bouncer = Bouncer(
            [PassphraseChecker(USERS)],
            self.store,
            clock=self.clock,
            name=name,
            quota=quota,
            upkeep=Upkeep(followInterval=FOLLOW, leaseTime=LEASE),
        )
        bouncer.registerRequester("r1", self.requester)
        bouncer.startService()
        self.addCleanup(bouncer.stopService)
        self.successResultOf(bouncer.started)
        return bouncer

    def login(
        self, bouncer: Bouncer, username: str, requesterName: str = "r1"
    ) -> Deferred[Keycard]:
        first = PassphraseKeycard(
            username=username, address="192.0.2.1", requesterName=requesterName
        )
        challenged = self.successResultOf(bouncer.authenticate(first))
        answered = PassphraseAnswerer(username, "pw").answer(challenged)
        return bouncer.authenticate(answered)

    def kill(self, bouncer: Bouncer) -> None:
        """
        As a SIGKILL leaves it: no more renewals, and records left behind.
        """
        bouncer.stopService()

    def test_seatFreedAfterLease(self) -> None:
        """
        A killed bouncer's seat stays taken until its lease runs out, then
        a new client gets it on another bouncer.
        """
        pool = Quota(seatPool="licenses", seats=1)
        one, two = self.bouncer("one", pool), self.bouncer("two", pool)
        self.successResultOf(self.login(one, "alice"))
        self.clock.advance(FOLLOW)
        self.kill(one)
        self.failureResultOf(self.login(two, "bob"), QuotaExceeded)
        self.clock.advance(LEASE - FOLLOW)
        self.failureResultOf(self.login(two, "bob"), QuotaExceeded)
        self.clock.advance(FOLLOW)
        self.successResultOf(self.login(two, "bob"))
        self.failureResultOf(self.login(two, "carol"), QuotaExceeded)

    def test_avatarPlaceFreedAfterLease(self) -> None:
        """
        So is an avatar's place, for its next login after a restart.
        """
        quota = Quota(maxPerAvatar=1)
        one = self.bouncer("one", quota)
        held = self.successResultOf(self.login(one, "alice"))
        self.kill(one)
        again = self.bouncer("one", quota)
        self.failureResultOf(self.login(again, "alice"), QuotaExceeded)
        self.clock.advance(LEASE)
        self.successResultOf(self.login(again, "alice"))
        assert held.id is not None
        record = self.successResultOf(self.store.get(held.id))
        self.assertFalse(record.held)

    def test_runningBouncerKeepsSeats(self) -> None:
        """
        A running bouncer renews its lease: its seats stay taken.
        """
        pool = Quota(seatPool="licenses", seats=1)
        one, two = self.bouncer("one", pool), self.bouncer("two", pool)
        self.successResultOf(self.login(one, "alice"))
        for _ in range(int(3 * LEASE)):
            self.clock.advance(FOLLOW)
        self.failureResultOf(self.login(two, "bob"), QuotaExceeded)
        self.assertEqual(self.requester.expired, [])

    def test_lostLeaseDropsClients(self) -> None:
        """
        A bouncer that stalled past its lease, whose keycards were released
        meanwhile (their seats may be taken again), drops their clients at
        its next renewal, and holds its new keycards under its lease again.
        """
        pool = Quota(seatPool="licenses", seats=2)
        one, two = self.bouncer("one", pool), self.bouncer("two", pool)
        held = self.successResultOf(self.login(one, "alice"))
        follower = one._upkeep.follower
        assert follower is not None
        follower.stop()
        self.clock.advance(LEASE + FOLLOW)
        self.successResultOf(self.login(two, "bob"))
        self.successResultOf(self.login(two, "carol"))
        self.assertEqual(self.requester.expired, [])
        follower.start()
        self.clock.advance(FOLLOW)
        self.assertEqual(self.requester.expired, [held.id])
        self.assertEqual(one.held, {})
        self.successResultOf(self.store.flushExpired(0))
        self.clock.advance(100 * FOLLOW)
        self.failureResultOf(self.login(one, "alice"), QuotaExceeded)

    def test_adoptedKeepsSeat(self) -> None:
        """
        A keycard another bouncer adopts (its requester reconnected there)
        is held under that bouncer's lease: its seat stays taken after the
        old lease runs out.  Once released, it is not adopted.
        """
        pool = Quota(seatPool="licenses", seats=2)
        one, two = self.bouncer("one", pool), self.bouncer("two", pool)
        alice = self.successResultOf(self.login(one, "alice"))
        bob = self.successResultOf(self.login(one, "bob"))
        self.kill(one)
        assert alice.id is not None and bob.id is not None
        self.assertEqual(self.successResultOf(two.adopt("r1", [alice.id])), 1)
        self.clock.advance(LEASE)
        self.successResultOf(self.login(two, "carol"))
        self.failureResultOf(self.login(two, "bob"), QuotaExceeded)
        self.assertEqual(self.successResultOf(two.adopt("r1", [bob.id])), 0)
        self.assertIn(alice.id, two.held)
        self.assertNotIn(bob.id, two.held)

    def test_loginWaitsForLease(self) -> None:
        """
        A login that arrives while the bouncer is still taking its lease
        waits for it, so that its keycard is held under the lease (and its
        seat freed if the bouncer is killed).
        """
        renewal: Deferred[bool] = Deferred()
        storeClass = type(self.store)
        renewLease = storeClass.renewLease
        self.patch(storeClass, "renewLease", lambda *args: renewal)
        bouncer = Bouncer(
            [PassphraseChecker(USERS)],
            self.store,
            clock=self.clock,
            name="one",
            quota=Quota(seatPool="p", seats=1),
            upkeep=Upkeep(followInterval=FOLLOW, leaseTime=LEASE),
        )
        bouncer.registerRequester("r1", self.requester)
        bouncer.startService()
        self.addCleanup(bouncer.stopService)
        first = PassphraseKeycard(username="alice", address="192.0.2.1")
        first.requesterName = "r1"
        pending = bouncer.authenticate(first)
        self.assertNoResult(pending)
        self.patch(storeClass, "renewLease", renewLease)
        renewal.callback(False)
        self.successResultOf(bouncer.started)
        challenged = self.successResultOf(pending)
        answered = PassphraseAnswerer("alice", "pw").answer(challenged)
        issued = self.successResultOf(bouncer.authenticate(answered))
        assert bouncer.lease is not None and issued.id is not None
        self.assertEqual(bouncer.held[issued.id].holderId, bouncer.lease.holderId)

    def test_restartReleasesDeadRun(self) -> None:
        """
        A bouncer restarted after a kill, told the lease of its dead run,
        frees the seats of that run's own clients (issued through the
        requester names it is given) at its start, not once the lease runs
        out, and logs C{lease.released}; another running bouncer keeps its
        own, and a keycard the dead run issued through a remote requester
        stays held, for that requester to adopt when it reconnects.
        """
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, events.append)  # type: ignore[arg-type]
        pool = Quota(seatPool="licenses", seats=3)
        one, two = self.bouncer("one", pool), self.bouncer("two", pool)
        one.registerRequester("remote", Requester())
        self.successResultOf(self.login(one, "alice"))
        remote = self.successResultOf(self.login(one, "bob", "remote"))
        self.successResultOf(self.login(two, "bob"))
        self.kill(one)
        assert one.lease is not None and two.lease is not None
        again = self.unstarted("one", pool)
        assert again.lease is not None
        again.lease.releaseDead([one.lease.holderId, again.lease.holderId], ["r1"])
        again.startService()
        self.addCleanup(again.stopService)
        self.successResultOf(again.started)
        self.successResultOf(self.login(again, "carol"))
        self.failureResultOf(self.login(again, "alice"), QuotaExceeded)
        assert remote.id is not None
        again.registerRequester("remote", Requester())
        self.assertEqual(self.successResultOf(again.adopt("remote", [remote.id])), 1)
        [released] = [e for e in events if e.get("event") == "lease.released"]
        self.assertEqual(released["count"], 1)
        self.assertEqual(released["deadHolderIds"], [one.lease.holderId])
        self.assertEqual(again.lease.dead, [])
        self.assertEqual(self.requester.expired, [])

    def test_deadKeptUntilReleased(self) -> None:
        """
        The keycards of a dead run whose release failed (the store was
        down) are released at the next renewal.
        """
        pool = Quota(seatPool="licenses", seats=1)
        one = self.bouncer("one", pool)
        self.successResultOf(self.login(one, "alice"))
        self.kill(one)
        assert one.lease is not None
        again = self.bouncer("one", pool)
        assert again.lease is not None
        storeClass = type(self.store)
        renewLease = storeClass.renewLease
        self.patch(
            storeClass, "renewLease", lambda *a: fail(OSError("the store is down"))
        )
        again.lease.releaseDead([one.lease.holderId], ["r1"])
        self.clock.advance(FOLLOW)
        self.assertEqual(again.lease.dead, [one.lease.holderId])
        self.flushLoggedErrors(OSError)
        self.patch(storeClass, "renewLease", renewLease)
        self.clock.advance(FOLLOW)
        self.assertEqual(again.lease.dead, [])
        self.successResultOf(self.login(again, "bob"))

    def unstarted(self, name: str, quota: Quota) -> Bouncer:
        bouncer = Bouncer(
            [PassphraseChecker(USERS)],
            self.store,
            clock=self.clock,
            name=name,
            quota=quota,
            upkeep=Upkeep(followInterval=FOLLOW, leaseTime=LEASE),
        )
        bouncer.registerRequester("r1", self.requester)
        return bouncer

    def test_leaseIds(self) -> None:
        """
        Each bouncer instance has a lease of its own, named after it.
        """
        quota = Quota(maxPerAvatar=5)
        leases = [self.bouncer("one", quota).lease for _ in range(2)]
        assert all(isinstance(lease, Lease) for lease in leases)
        ids = [lease.holderId for lease in leases if lease is not None]
        self.assertEqual(len(set(ids)), 2)
        self.assertTrue(all(i.startswith("one:") for i in ids))


class MemoryLeaseTests(_Leases, SynchronousTestCase):
    def makeStore(self) -> MemoryStore:
        return MemoryStore()


class SQLiteLeaseTests(_Leases, SynchronousTestCase):
    def makeStore(self) -> SQLiteStore:
        store = SQLiteStore(self.mktemp(), threaded=False)
        self.addCleanup(store.close)
        return store


class RunLeasesTests(SynchronousTestCase):
    """
    The files of a data directory's running bouncers' leases: a file whose
    lock is held names a live run; one whose lock is free, a dead one.
    """

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()) / "leases"

    def test_deadRunsTaken(self) -> None:
        """
        A run whose lock is held is left alone; once it is unlocked (its
        process ended), its lease is taken once, and its file removed.
        """
        self.assertEqual(RunLeases(self.directory).takeDead(), [])
        first, second = RunLeases(self.directory), RunLeases(self.directory)
        first.hold("one:aaa")
        second.hold("two:bbb")
        self.addCleanup(second.close)
        self.assertEqual(RunLeases(self.directory).takeDead(), [])
        self.assertEqual(stat.S_IMODE(self.directory.stat().st_mode), 0o700)
        [path, _] = sorted(self.directory.iterdir())
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        first.close()
        self.assertEqual(RunLeases(self.directory).takeDead(), ["one:aaa"])
        self.assertEqual(RunLeases(self.directory).takeDead(), [])
        self.assertEqual(len(list(self.directory.iterdir())), 1)

    def test_unfinishedIgnored(self) -> None:
        """
        A file still being made (hidden, not yet locked and renamed) is not
        taken for a dead run's.
        """
        self.directory.mkdir(parents=True)
        (self.directory / ".abc.tmp").write_text("one:aaa\n")
        self.assertEqual(RunLeases(self.directory).takeDead(), [])

    def test_leaseRecord(self) -> None:
        """
        The service's L{LeaseRecord} hands the bouncer's lease the dead
        runs' leases and the requester names of its own faces, then holds
        its own; a directory it cannot write is a warning, not a failed
        start.
        """
        dead = RunLeases(self.directory)
        dead.hold("one:dead")
        dead.close()
        bouncer = Bouncer(
            [PassphraseChecker(USERS)], MemoryStore(), clock=Clock(), name="one"
        )
        lease = bouncer.lease
        assert lease is not None
        record = LeaseRecord(RunLeases(self.directory), lease, ["keycard-bouncer"])
        record.startService()
        self.assertEqual(lease.dead, ["one:dead"])
        self.assertEqual(lease.deadRequesters, {"keycard-bouncer"})
        self.assertEqual(RunLeases(self.directory).takeDead(), [])
        record.stopService()
        self.assertEqual(RunLeases(self.directory).takeDead(), [lease.holderId])

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, events.append)  # type: ignore[arg-type]
        blocked = Path(self.mktemp())
        blocked.write_text("not a directory")
        record = LeaseRecord(RunLeases(blocked), lease, ["keycard-bouncer"])
        record.startService()
        self.assertTrue(record.running)
        [warning] = [e for e in events if e.get("event") == "bouncer.warning"]
        self.assertIn("cannot record this bouncer's lease", warning["log_format"])


class _DownAtFirst(MemoryStore):
    """
    A memory store whose revocation log cannot be read for its first
    C{failures} reads (a store that went away while a bouncer started);
    it counts the reads.
    """

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.reads = 0

    def revokedSince(self, cursor: int, limit: int) -> Any:
        self.reads += 1
        if self.failures:
            self.failures -= 1
            return fail(ConnectionRefusedError("the store is down"))
        return super().revokedSince(cursor, limit)


class StartTriedAgainTests(SynchronousTestCase):
    """
    A bouncer whose start fails (its store unreachable) tries again, after
    1 s and then twice as long each time, until it has started, and then
    follows the store; a stopped bouncer tries no more.
    """

    def started(self, failures: int) -> tuple[Clock, _DownAtFirst, Bouncer]:
        clock = Clock()
        store = _DownAtFirst(failures)
        bouncer = Bouncer([PassphraseChecker(USERS)], store, clock=clock)
        bouncer.startService()
        self.addCleanup(bouncer.stopService)
        return clock, store, bouncer

    def test_triedAgainUntilStarted(self) -> None:
        clock, store, bouncer = self.started(2)
        self.assertIsNone(self.successResultOf(bouncer.started))
        self.assertEqual(len(self.flushLoggedErrors(ConnectionRefusedError)), 1)
        self.assertEqual(store.reads, 1)
        clock.advance(1.0)
        self.assertEqual(store.reads, 2)
        self.assertEqual(len(self.flushLoggedErrors(ConnectionRefusedError)), 1)
        clock.advance(1.9)
        self.assertEqual(store.reads, 2)
        clock.advance(0.1)
        # Started: the revocations are read at every follow interval.
        self.assertEqual(store.reads, 3)
        clock.advance(1.0)
        self.assertEqual(store.reads, 4)
        self.assertEqual(self.flushLoggedErrors(ConnectionRefusedError), [])

    def test_notAfterStop(self) -> None:
        clock, store, bouncer = self.started(5)
        self.flushLoggedErrors(ConnectionRefusedError)
        self.successResultOf(bouncer.stopService())
        clock.advance(60.0)
        self.assertEqual(store.reads, 1)
        self.assertEqual(clock.getDelayedCalls(), [])
