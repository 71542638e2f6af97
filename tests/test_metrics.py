"""
Tests for the bouncer's metrics: what L{Bouncer} tells its
L{IBouncerMetrics}, as Prometheus collectors, with a L{Clock} and no
sockets.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from twisted.copyright import version as twistedVersion
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_keycard import Bouncer, KeycardDenied, KeycardRefused, MemoryStore
from twisted_keycard._version import __version__
from twisted_keycard.bouncer import (
    AddressRule,
    CompositePolicy,
    ExchangeLimits,
    IRequester,
    Quota,
    Revoker,
    Throttle,
    TokenPolicy,
    Upkeep,
)
from twisted_keycard.bouncer._interfaces import REASONS, failureReason
from twisted_keycard.keycard._keycard import Keycard
from twisted_keycard.metrics import (
    IBouncerMetrics,
    NoMetrics,
    PrometheusMetrics,
)
from twisted_keycard.store import (
    IKeycardStore,
    IssuedKeycard,
)
from twisted_keycard.tokens import KeyringHolder

from ._passphrase import PassphraseAnswerer, PassphraseChecker, PassphraseKeycard

KIND = "tests.passphrase"


class FailingStore(MemoryStore):
    def add(self, record: IssuedKeycard) -> Deferred[None]:
        return fail(OSError("disk"))


@implementer(IKeycardStore)
class CountsOnlyStore:
    """
    A keycard store that says nothing of its health: the memory store's
    keycards, behind L{IKeycardStore} only.
    """

    def __init__(self) -> None:
        self._store = MemoryStore()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@implementer(IRequester)
class CountingRequester:
    def keycardIds(self) -> list[str]:
        return []

    def expireKeycardIds(self, keycardIds: Sequence[str]) -> None:
        pass


class Harness:
    """
    A bouncer with Prometheus metrics, and ways to log in to it.
    """

    def __init__(
        self,
        test: SynchronousTestCase,
        store: Any = None,
        *,
        timed: bool = False,
        **options: object,
    ) -> None:
        self.test = test
        self.clock = Clock()
        self.clock.advance(1000)
        self.registry = CollectorRegistry()
        self.metrics = PrometheusMetrics(self.registry, timer=self.clock.seconds)
        self.store = store if store is not None else MemoryStore()
        self.bouncer = Bouncer(
            [PassphraseChecker({"alice": "pw", "bob": "pw"})],
            self.metrics.timed(self.store) if timed else self.store,
            clock=self.clock,
            metrics=self.metrics,
            **options,  # type: ignore[arg-type]
        )

    def value(self, name: str, **labels: str) -> float:
        found = self.registry.get_sample_value(name, labels)
        return math.nan if found is None else found

    def first(self, username: str = "alice", address: str = "10.0.0.1") -> Keycard:
        keycard = PassphraseKeycard(
            username=username, address=address, requesterName="r"
        )
        return self.test.successResultOf(self.bouncer.authenticate(keycard))

    def attempt(
        self, username: str = "alice", secret: str = "pw", address: str = "10.0.0.1"
    ) -> Deferred[Keycard]:
        first = PassphraseKeycard(username=username, address=address, requesterName="r")
        d = self.bouncer.authenticate(first)
        if not isinstance(d.result, Keycard):
            return d
        return self.bouncer.authenticate(
            PassphraseAnswerer(username, secret).answer(d.result)
        )

    def login(self, username: str = "alice", address: str = "10.0.0.1") -> Keycard:
        return self.test.successResultOf(self.attempt(username, "pw", address))


class InterfaceTests(SynchronousTestCase):
    def test_provides(self) -> None:
        self.assertTrue(verifyObject(IBouncerMetrics, NoMetrics()))
        prometheus = PrometheusMetrics(CollectorRegistry())
        self.assertTrue(verifyObject(IBouncerMetrics, prometheus))

    def test_noMetricsByDefault(self) -> None:
        bouncer = Bouncer([PassphraseChecker({})], clock=Clock())
        self.assertIsInstance(bouncer.metrics, NoMetrics)

    def test_registryPerBouncer(self) -> None:
        """
        Two bouncers in one process keep their own counts; one registry
        cannot hold two bouncers' metrics.
        """
        one, two = Harness(self), Harness(self)
        one.login()
        self.assertEqual(
            one.value("keycard_logins_total", kind=KIND, result="success"), 1
        )
        self.assertEqual(
            two.value("keycard_logins_total", kind=KIND, result="success"), 0
        )
        self.assertRaises(ValueError, PrometheusMetrics, one.registry)

    def test_reasons(self) -> None:
        """
        Every reason counts as one of the failed results.
        """
        self.assertEqual(set(REASONS.values()), {"refused", "denied", "error"})
        self.assertEqual(failureReason(RuntimeError("boom")), "error")
        self.assertEqual(failureReason(KeycardDenied("something new")), "denied")


class LoginMetricsTests(SynchronousTestCase):
    def test_successAndRefusal(self) -> None:
        """
        Logins are counted by kind and result, once each when they end; the
        kinds the bouncer takes are shown at zero from the start.
        """
        h = Harness(self)
        for result in ("success", "refused", "denied", "error"):
            self.assertEqual(
                h.value("keycard_logins_total", kind=KIND, result=result), 0
            )
        h.first()
        self.assertEqual(
            h.value("keycard_logins_total", kind=KIND, result="success"), 0
        )
        h.login()
        h.login("bob")
        self.failureResultOf(h.attempt("alice", "wrong"), KeycardRefused)
        self.failureResultOf(h.attempt("mallory", "pw"), KeycardRefused)
        self.assertEqual(
            h.value("keycard_logins_total", kind=KIND, result="success"), 2
        )
        self.assertEqual(
            h.value("keycard_logins_total", kind=KIND, result="refused"), 2
        )
        self.assertEqual(h.value("keycard_refusals_total", reason="credentials"), 2)
        self.assertEqual(h.value("keycard_refusals_total", reason="unknown-id"), 0)

    def test_reasons(self) -> None:
        """
        Refusals are counted by a fixed reason, and a keycard class the
        bouncer does not take is counted as C{other}.
        """
        h = Harness(self)
        answered = PassphraseAnswerer("alice", "pw").answer(h.first())
        replayed = PassphraseKeycard(
            id=answered.id,
            username="alice",
            response=answered.response,
            address="10.0.0.1",
            requesterName="r",
        )
        self.successResultOf(h.bouncer.authenticate(answered))
        self.failureResultOf(h.bouncer.authenticate(replayed), KeycardRefused)
        self.failureResultOf(h.bouncer.authenticate(answered), KeycardRefused)
        stolen = PassphraseAnswerer("alice", "pw").answer(h.first())
        stolen.address = "10.9.9.9"
        self.failureResultOf(h.bouncer.authenticate(stolen), KeycardRefused)
        unanswered = h.first()
        self.failureResultOf(h.bouncer.authenticate(unanswered), KeycardRefused)
        foreign = Keycard(address="10.0.0.1", requesterName="r")
        self.failureResultOf(h.bouncer.authenticate(foreign), KeycardRefused)
        self.assertEqual(h.value("keycard_refusals_total", reason="unknown-id"), 1)
        self.assertEqual(h.value("keycard_refusals_total", reason="other-client"), 1)
        self.assertEqual(h.value("keycard_refusals_total", reason="protocol"), 1)
        self.assertEqual(h.value("keycard_refusals_total", reason="kind"), 1)
        self.assertEqual(h.value("keycard_refusals_total", reason="state"), 1)
        self.assertEqual(
            h.value("keycard_logins_total", kind="other", result="refused"), 1
        )
        self.assertEqual(
            h.value("keycard_logins_total", kind=KIND, result="refused"), 4
        )

    def test_policyAndQuota(self) -> None:
        h = Harness(
            self,
            policy=CompositePolicy(
                "address", address=AddressRule.fromStrings(["10.0.0.0/8"], [])
            ),
            quota=Quota(maxPerAvatar=1),
        )
        self.failureResultOf(h.attempt(address="192.0.2.1"), KeycardRefused)
        h.login()
        self.failureResultOf(h.attempt(), KeycardDenied)
        self.assertEqual(h.value("keycard_refusals_total", reason="policy"), 1)
        self.assertEqual(h.value("keycard_refusals_total", reason="quota"), 1)
        self.assertEqual(h.value("keycard_logins_total", kind=KIND, result="denied"), 1)

    def test_throttledAndBusy(self) -> None:
        h = Harness(
            self,
            throttle=Throttle(perAccount=2, perAddress=100, window=60.0),
            limits=ExchangeLimits(timeout=10.0, maxPending=2, maxPendingPerAddress=2),
        )
        for _ in range(2):
            self.failureResultOf(h.attempt("alice", "wrong"), KeycardRefused)
        self.failureResultOf(h.attempt("alice", "pw"), KeycardDenied)
        self.assertEqual(h.value("keycard_throttled_total"), 1)
        self.assertEqual(h.value("keycard_refusals_total", reason="throttled"), 1)
        h.first("bob")
        h.first("bob")
        self.failureResultOf(h.attempt("bob"), KeycardDenied)
        self.assertEqual(h.value("keycard_refusals_total", reason="busy"), 1)
        self.assertEqual(h.value("keycard_throttled_total"), 1)
        self.assertEqual(h.value("keycard_logins_total", kind=KIND, result="denied"), 2)

    def test_bouncerFailure(self) -> None:
        """
        A store that fails counts as an error, not as a refusal.
        """
        h = Harness(self, FailingStore())
        self.failureResultOf(h.attempt(), KeycardDenied)
        self.assertEqual(h.value("keycard_logins_total", kind=KIND, result="error"), 1)
        self.assertEqual(h.value("keycard_refusals_total", reason="error"), 1)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)


class SlowStore(MemoryStore):
    """
    A store that records a keycard C{delay} seconds after it is asked, by
    its C{clock}.
    """

    clock: Clock
    delay = 0.3

    def add(self, record: IssuedKeycard) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        d.addCallback(lambda _: super(SlowStore, self).add(record))
        self.clock.callLater(self.delay, d.callback, None)
        return d


class AnswerTimeTests(SynchronousTestCase):
    def test_eachMessage(self) -> None:
        """
        Each message's answer is timed by the bouncer's clock, from its
        arrival to its answer: the challenge at once, the keycard once the
        store has recorded it; the client's time between them is not
        counted.
        """
        store = SlowStore()
        h = Harness(self, store)
        store.clock = h.clock
        self.assertEqual(h.value("keycard_answer_seconds_count", kind=KIND), 0)
        challenged = h.first()
        h.clock.advance(5)
        d = h.bouncer.authenticate(PassphraseAnswerer("alice", "pw").answer(challenged))
        self.assertNoResult(d)
        h.clock.advance(0.3)
        self.successResultOf(d)
        self.assertEqual(h.value("keycard_answer_seconds_count", kind=KIND), 2)
        self.assertAlmostEqual(h.value("keycard_answer_seconds_sum", kind=KIND), 0.3)
        for le, count in [("0.001", 1), ("0.25", 1), ("0.5", 2)]:
            self.assertEqual(
                h.value("keycard_answer_seconds_bucket", kind=KIND, le=le), count
            )

    def test_refusalTimed(self) -> None:
        """
        A refused message is timed too, under its kind, or C{other} for a
        class the bouncer does not take.
        """
        h = Harness(self)
        self.failureResultOf(h.attempt("alice", "wrong"), KeycardRefused)
        self.assertEqual(h.value("keycard_answer_seconds_count", kind=KIND), 2)
        self.failureResultOf(h.bouncer.authenticate(Keycard()), KeycardRefused)
        self.assertEqual(h.value("keycard_answer_seconds_count", kind="other"), 1)


class GaugeTests(SynchronousTestCase):
    def test_heldAndPending(self) -> None:
        """
        The gauges read the bouncer when collected: exchanges waiting for an
        answer, until answered or timed out, and keycards held, until
        removed.
        """
        h = Harness(self, limits=ExchangeLimits(timeout=10.0))
        self.assertEqual(h.value("keycard_held"), 0)
        h.first()
        h.first("bob")
        self.assertEqual(h.value("keycard_exchanges_pending"), 2)
        h.clock.advance(11)
        self.assertEqual(h.value("keycard_exchanges_pending"), 0)
        keycard = h.login()
        h.login("bob")
        self.assertEqual(h.value("keycard_exchanges_pending"), 0)
        self.assertEqual(h.value("keycard_held"), 2)
        assert keycard.id is not None
        self.successResultOf(h.bouncer.removeKeycardId(keycard.id))
        self.assertEqual(h.value("keycard_held"), 1)

    def test_followLag(self) -> None:
        """
        The follow lag is the time since the revocations were last read:
        none before the bouncer runs, then it grows until the next poll.
        """
        h = Harness(self)
        self.assertTrue(math.isnan(h.value("keycard_follow_lag_seconds")))
        h.bouncer.startService()
        self.assertEqual(h.value("keycard_follow_lag_seconds"), 0)
        h.clock.advance(0.75)
        self.assertEqual(h.value("keycard_follow_lag_seconds"), 0.75)
        h.clock.advance(0.25)
        self.assertEqual(h.value("keycard_follow_lag_seconds"), 0)
        h.bouncer.stopService()
        self.assertTrue(math.isnan(h.value("keycard_follow_lag_seconds")))


class RevocationMetricsTests(SynchronousTestCase):
    def test_revocations(self) -> None:
        """
        Revocations read from the store are counted, whoever recorded them,
        with their delay; held keycards dropped for a revocation are
        counted once.
        """
        h = Harness(self)
        h.bouncer.startService()
        self.addCleanup(h.bouncer.stopService)
        mine, theirs, kept = h.login(), h.login("bob"), h.login()
        assert mine.id is not None and theirs.id is not None
        self.successResultOf(h.bouncer.revokeKeycardIds([mine.id]))
        self.assertEqual(h.value("keycard_revoked_held_total"), 1)
        h.clock.advance(0.5)
        # The keycard command revokes with a revoker of its own.
        other = Revoker(h.store, h.clock, 3600.0)
        self.successResultOf(other.revokeKeycardIds([theirs.id]))
        self.assertEqual(h.value("keycard_revoked_held_total"), 1)
        h.clock.advance(0.5)
        # Each revocation is two records: the keycard id and its family.
        self.assertEqual(h.value("keycard_revocations_seen_total"), 4)
        self.assertEqual(h.value("keycard_revoked_held_total"), 2)
        self.assertEqual(h.value("keycard_revocation_delay_seconds_count"), 4)
        self.assertEqual(h.value("keycard_revocation_delay_seconds_sum"), 3.0)
        self.assertEqual(
            h.value("keycard_revocation_delay_seconds_bucket", le="0.5"), 2
        )
        self.assertEqual(h.value("keycard_held"), 1)
        self.assertIn(kept.id, h.bouncer.held)


class SwitchedStore(MemoryStore):
    """
    A store in memory whose health the test sets.
    """

    up = True
    queued = 0

    def storeUp(self) -> bool:
        return self.up

    def writesQueued(self) -> int:
        return self.queued


class ScrapeTimeGaugeTests(SynchronousTestCase):
    """
    The gauges a L{BouncerCollector} reads when metrics are collected: of
    the store, the seat pool, the lease, the requesters, the signing key,
    the throttle and the build.
    """

    def test_store(self) -> None:
        """
        The store's own view, read at each collection through the timed
        proxy the service puts in front of it.
        """
        store = SwitchedStore()
        h = Harness(self, store, timed=True)
        self.assertEqual(h.value("keycard_store_up"), 1)
        self.assertEqual(h.value("keycard_store_writes_queued"), 0)
        store.up, store.queued = False, 7
        self.assertEqual(h.value("keycard_store_up"), 0)
        self.assertEqual(h.value("keycard_store_writes_queued"), 7)

    def test_storeThatCannotSay(self) -> None:
        """
        A store that does not provide L{IStoreHealth} shows no store gauge,
        rather than a made-up one.
        """
        h = Harness(self, CountsOnlyStore())
        self.assertTrue(math.isnan(h.value("keycard_store_up")))
        self.assertTrue(math.isnan(h.value("keycard_store_writes_queued")))
        self.assertEqual(h.value("keycard_held"), 0)

    def test_seatPool(self) -> None:
        h = Harness(self, quota=Quota(seatPool="floor", seats=3))
        self.assertEqual(h.value("keycard_seat_pool_size", pool="floor"), 3)
        self.assertEqual(h.value("keycard_seat_pool_held", pool="floor"), 0)
        first = h.login()
        h.login("bob")
        self.assertEqual(h.value("keycard_seat_pool_held", pool="floor"), 2)
        assert first.id is not None
        self.successResultOf(h.bouncer.removeKeycardId(first.id))
        self.assertEqual(h.value("keycard_seat_pool_held", pool="floor"), 1)

    def test_seatShares(self) -> None:
        """
        The most seats one avatar holds, the cap per avatar, and the
        refusals of a seat by the limit reached.
        """
        h = Harness(self, quota=Quota(seatPool="floor", seats=4, seatsPerAvatar=2))
        most = "keycard_seat_pool_avatar_max_held"
        refused = "keycard_seat_pool_refusals_total"
        self.assertEqual(h.value(most, pool="floor"), 0)
        self.assertEqual(h.value("keycard_seat_pool_seats_per_avatar", pool="floor"), 2)
        h.login()
        h.login("bob")
        self.assertEqual(h.value(most, pool="floor"), 1)
        h.login()
        self.assertEqual(h.value(most, pool="floor"), 2)
        failure = self.failureResultOf(h.attempt())
        self.assertEqual(
            failure.getErrorMessage(), "too many seats of pool 'floor' for this avatar"
        )
        self.assertEqual(h.value(refused, pool="floor", limit="seats-per-avatar"), 1)
        self.assertEqual(h.value(refused, pool="floor", limit="pool"), 0)
        h.login("bob", "10.0.0.2")
        failure = self.failureResultOf(h.attempt("bob", "pw", "10.0.0.3"))
        self.assertEqual(failure.getErrorMessage(), "no seat left in pool 'floor'")
        self.assertEqual(h.value(refused, pool="floor", limit="pool"), 1)
        self.assertEqual(h.value(refused, pool="floor", limit="avatar"), 0)
        self.assertEqual(h.value("keycard_seat_pool_held", pool="floor"), 4)

    def test_noSeatPool(self) -> None:
        h = Harness(self)
        self.assertNotIn(
            "keycard_seat_pool_size",
            {s.name for m in h.registry.collect() for s in m.samples},
        )

    def test_lease(self) -> None:
        """
        No lease before the bouncer runs; then the keycards held under it
        and the seconds left before it runs out, counted down by the clock
        and back up at each renewal.
        """
        h = Harness(self, upkeep=Upkeep(leaseTime=30.0))
        self.assertEqual(h.value("keycard_lease_active"), 0)
        self.assertTrue(math.isnan(h.value("keycard_lease_remaining_seconds")))
        h.bouncer.startService()
        self.addCleanup(h.bouncer.stopService)
        self.assertEqual(h.value("keycard_lease_active"), 1)
        self.assertEqual(h.value("keycard_lease_keycards"), 0)
        self.assertEqual(h.value("keycard_lease_remaining_seconds"), 30.0)
        h.login()
        h.clock.advance(0.5)
        self.assertEqual(h.value("keycard_lease_keycards"), 1)
        self.assertEqual(h.value("keycard_lease_remaining_seconds"), 29.5)

    def test_requesters(self) -> None:
        """
        Each configured requester name is shown, 1 while registered; any
        other name (a peer's choice) only counts in the total.
        """
        clock = Clock()
        registry = CollectorRegistry()
        metrics = PrometheusMetrics(registry, requesters={"app1", "app2"})
        bouncer = Bouncer(
            [PassphraseChecker({})], MemoryStore(), clock=clock, metrics=metrics
        )
        requester = CountingRequester()
        bouncer.registerRequester("app1", requester)
        bouncer.registerRequester("eve\x1b", CountingRequester())

        def value(name: str, **labels: str) -> float | None:
            return registry.get_sample_value(name, labels)

        self.assertEqual(value("keycard_requester_connected", requester="app1"), 1)
        self.assertEqual(value("keycard_requester_connected", requester="app2"), 0)
        self.assertIsNone(value("keycard_requester_connected", requester="eve\x1b"))
        self.assertEqual(value("keycard_requesters_connected"), 2)
        bouncer.unregisterRequester("app1")
        self.assertEqual(value("keycard_requester_connected", requester="app1"), 0)
        self.assertEqual(value("keycard_requesters_connected"), 1)

    def test_signingKey(self) -> None:
        """
        The signing key's public id, as a label of an info metric, and its
        age by the bouncer's clock; after a rotation, the new id only.
        """
        h = Harness(self, tokens=TokenPolicy())
        samples = {s.name for m in h.registry.collect() for s in m.samples}
        self.assertNotIn("keycard_signing_key_info", samples)
        h.bouncer.startService()
        self.addCleanup(h.bouncer.stopService)
        keys = h.bouncer.keys
        assert keys is not None and keys.keyring is not None
        old = keys.keyring.signing
        self.assertEqual(h.value("keycard_signing_key_info", kid=old.kid), 1)
        self.assertEqual(h.value("keycard_signing_key_age_seconds"), 0)
        h.clock.advance(100)
        self.assertEqual(h.value("keycard_signing_key_age_seconds"), 100)
        fresh = self.successResultOf(
            Deferred.fromCoroutine(KeyringHolder(h.store, h.clock).rotate(60.0))
        )
        h.clock.advance(1)
        self.assertEqual(h.value("keycard_signing_key_info", kid=fresh.kid), 1)
        self.assertTrue(math.isnan(h.value("keycard_signing_key_info", kid=old.kid)))
        self.assertEqual(h.value("keycard_signing_key_age_seconds"), 1)
        text = generate_latest(h.registry).decode("ascii")
        self.assertNotIn(old.secret.hex(), text)
        self.assertNotIn(fresh.secret.hex(), text)

    def test_throttleRecords(self) -> None:
        """
        The accounts and address groups the throttle counts in memory, and
        the most it counts.
        """
        h = Harness(self, throttle=Throttle(maxKeys=500))
        self.assertEqual(h.value("keycard_throttle_records"), 0)
        self.assertEqual(h.value("keycard_throttle_records_max"), 500)
        self.failureResultOf(h.attempt("alice", "wrong"), KeycardRefused)
        self.assertEqual(h.value("keycard_throttle_records"), 2)
        self.assertTrue(math.isnan(Harness(self).value("keycard_throttle_records")))

    def test_watchedAgain(self) -> None:
        """
        Metrics watching a second bouncer show its gauges, once each, as
        the gauges set by a function do.
        """
        h = Harness(self, quota=Quota(seatPool="floor", seats=3))
        Bouncer(
            [PassphraseChecker({})],
            MemoryStore(),
            clock=h.clock,
            metrics=h.metrics,
            quota=Quota(seatPool="lab", seats=7),
        )
        text = generate_latest(h.registry).decode("ascii")
        self.assertEqual(text.count("\nkeycard_store_up "), 1)
        self.assertEqual(h.value("keycard_seat_pool_size", pool="lab"), 7)
        self.assertTrue(math.isnan(h.value("keycard_seat_pool_size", pool="floor")))

    def test_build(self) -> None:
        h = Harness(self)
        self.assertEqual(
            h.value(
                "keycard_build_info",
                version=__version__,
                python=platform.python_version(),
                twisted=twistedVersion,
            ),
            1,
        )
