"""
Tests for L{twisted_keycard.bouncer._bouncer.Bouncer}, with a L{Clock} and no PB.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_keycard import (
    Bouncer,
    IBouncer,
    IRequester,
    KeycardDenied,
    KeycardRefused,
    KeycardState,
    MemoryStore,
)
from twisted_keycard.bouncer import ExchangeLimits, newKeycardId
from twisted_keycard.bouncer import _bouncer as bouncerModule

from ._passphrase import PassphraseAnswerer, PassphraseChecker, PassphraseKeycard


@implementer(IRequester)
@attrs.define
class RecordingRequester:
    expired: list[list[str]] = attrs.field(factory=list)

    def keycardIds(self) -> list[str]:
        return []

    def expireKeycardIds(self, keycardIds: Sequence[str]) -> None:
        self.expired.append(list(keycardIds))


class BouncerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.checker = PassphraseChecker({"alice": "wonderland"})
        self.store = MemoryStore()
        self.bouncer = Bouncer(
            [self.checker],
            self.store,
            clock=self.clock,
            name="b1",
            duration=60.0,
            limits=ExchangeLimits(timeout=10.0, maxPending=5, maxPendingPerAddress=3),
        )
        self.requester = RecordingRequester()
        self.bouncer.registerRequester("r1", self.requester)

    def first(
        self, username: str = "alice", address: str = "10.0.0.1"
    ) -> PassphraseKeycard:
        keycard = PassphraseKeycard(
            username=username, address=address, requesterName="r1"
        )
        result = self.successResultOf(self.bouncer.authenticate(keycard))
        assert isinstance(result, PassphraseKeycard)
        return result

    def login(
        self, username: str = "alice", secret: str = "wonderland"
    ) -> PassphraseKeycard:
        challenged = self.first(username)
        answered = PassphraseAnswerer(username, secret).answer(challenged)
        result = self.successResultOf(self.bouncer.authenticate(answered))
        assert isinstance(result, PassphraseKeycard)
        return result

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IBouncer, self.bouncer))
        self.assertEqual(self.bouncer.keycardClasses, (PassphraseKeycard,))

    def test_challenge(self) -> None:
        """
        The first message gets a fresh id of at least 128 bits and a
        challenge, and nothing is issued yet.
        """
        keycard = self.first()
        self.assertIs(keycard.state, KeycardState.REQUESTING)
        assert keycard.id is not None
        self.assertGreaterEqual(len(keycard.id), 22)
        self.assertIsNotNone(keycard.challenge)
        self.assertNotEqual(keycard.id, self.first().id)
        self.assertEqual(self.successResultOf(self.store.count()), 0)

    def test_success(self) -> None:
        keycard = self.login()
        self.assertIs(keycard.state, KeycardState.AUTHENTICATED)
        self.assertEqual(keycard.avatarId, "alice")
        self.assertEqual(keycard.bouncerName, "b1")
        self.assertEqual(keycard.duration, 60.0)
        self.assertEqual(keycard.expires, 1060.0)
        assert keycard.id is not None
        record = self.successResultOf(self.store.get(keycard.id))
        assert record is not None
        self.assertEqual(
            (record.avatarId, record.requesterName, record.address),
            ("alice", "r1", "10.0.0.1"),
        )

    def test_clientFieldsIgnored(self) -> None:
        """
        An avatar id, duration or token the client puts in its keycard is
        dropped: the avatar id comes from the checker.
        """
        challenged = self.first()
        answered = PassphraseAnswerer("alice", "wonderland").answer(challenged)
        answered.avatarId = "root"
        answered.duration = 1e9
        answered.token = "forged"
        result = self.successResultOf(self.bouncer.authenticate(answered))
        self.assertEqual(
            (result.avatarId, result.duration, result.token), ("alice", 60.0, None)
        )

    def assertRefused(self, keycard: PassphraseKeycard) -> None:
        failure = self.failureResultOf(
            self.bouncer.authenticate(keycard), KeycardRefused
        )
        self.assertEqual(failure.getErrorMessage(), KeycardRefused.MESSAGE)

    def test_wrongSecret(self) -> None:
        challenged = self.first()
        self.assertRefused(PassphraseAnswerer("alice", "nope").answer(challenged))
        self.assertEqual(self.successResultOf(self.store.count()), 0)

    def test_unknownUser(self) -> None:
        challenged = self.first("mallory")
        self.assertRefused(PassphraseAnswerer("mallory", "x").answer(challenged))

    def test_replay(self) -> None:
        """
        An answer is taken once: sending it again is refused.
        """
        challenged = self.first()
        answered = PassphraseAnswerer("alice", "wonderland").answer(challenged)
        replay = PassphraseKeycard(
            id=answered.id,
            username="alice",
            response=answered.response,
            address="10.0.0.1",
            requesterName="r1",
        )
        self.successResultOf(self.bouncer.authenticate(answered))
        self.assertRefused(replay)

    def test_forgedId(self) -> None:
        keycard = PassphraseKeycard(
            id="A" * 32,
            username="alice",
            response="00",
            address="10.0.0.1",
            requesterName="r1",
        )
        self.assertRefused(keycard)

    def test_idFromAnotherAddress(self) -> None:
        """
        An id answered from another address than the one it was issued to is
        refused, and is used up.
        """
        challenged = self.first()
        answered = PassphraseAnswerer("alice", "wonderland").answer(challenged)
        answered.address = "10.6.6.6"
        self.assertRefused(answered)
        answered.address = "10.0.0.1"
        self.assertRefused(answered)

    def test_idFromAnotherRequester(self) -> None:
        challenged = self.first()
        answered = PassphraseAnswerer("alice", "wonderland").answer(challenged)
        answered.requesterName = "r2"
        self.assertRefused(answered)

    def test_authenticatedKeycardRefused(self) -> None:
        keycard = PassphraseKeycard(username="alice", state=KeycardState.AUTHENTICATED)
        self.assertRefused(keycard)

    def test_notTaken(self) -> None:
        """
        A keycard class no challenger serves is refused.
        """
        bouncer = Bouncer([], clock=self.clock)
        self.failureResultOf(
            bouncer.authenticate(PassphraseKeycard(username="alice")), KeycardRefused
        )

    def test_challengeTimeout(self) -> None:
        challenged = self.first()
        answered = PassphraseAnswerer("alice", "wonderland").answer(challenged)
        self.clock.advance(10.0)
        self.assertRefused(answered)

    def test_answerInTime(self) -> None:
        challenged = self.first()
        answered = PassphraseAnswerer("alice", "wonderland").answer(challenged)
        self.clock.advance(9.9)
        self.successResultOf(self.bouncer.authenticate(answered))

    def test_floodPerAddress(self) -> None:
        """
        Unfinished exchanges from one address are bounded; other addresses
        still get in, and the bound frees up when the challenges expire.
        """
        for _ in range(3):
            self.first()
        keycard = PassphraseKeycard(username="alice", address="10.0.0.1")
        self.failureResultOf(self.bouncer.authenticate(keycard), KeycardDenied)
        self.first(address="10.0.0.2")
        self.clock.advance(10.0)
        self.first()

    def test_floodTotal(self) -> None:
        """
        The exchanges in progress are bounded in all: with every address
        holding as many as the largest, a new one is refused.
        """
        for i in range(5):
            self.first(address=f"10.0.1.{i}")
        keycard = PassphraseKeycard(username="alice", address="10.0.1.0")
        self.failureResultOf(self.bouncer.authenticate(keycard), KeycardDenied)
        self.assertEqual(len(self.bouncer._authentication.pending), 5)

    def test_finishedExchangeFreesItsPlace(self) -> None:
        for _ in range(10):
            self.login()

    def test_expiryAtDuration(self) -> None:
        """
        A keycard expires exactly when its duration ends, and the requester
        that holds it is told.
        """
        keycard = self.login()
        self.clock.advance(59.999)
        self.assertEqual(self.requester.expired, [])
        self.clock.advance(0.001)
        self.assertEqual(self.requester.expired, [[keycard.id]])
        assert keycard.id is not None
        self.assertIsNone(self.successResultOf(self.store.get(keycard.id)))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_expiryBatches(self) -> None:
        """
        Keycards that expire at one time are reported in one call.
        """
        ids = {self.login().id for _ in range(3)}
        self.clock.advance(60)
        self.assertEqual(len(self.requester.expired), 1)
        self.assertEqual(set(self.requester.expired[0]), ids)

    def test_removeKeycardId(self) -> None:
        keycard = self.login()
        assert keycard.id is not None
        self.assertTrue(self.successResultOf(self.bouncer.removeKeycardId(keycard.id)))
        self.assertFalse(self.successResultOf(self.bouncer.removeKeycardId(keycard.id)))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(100)
        self.assertEqual(self.requester.expired, [])

    def test_expireKeycardIds(self) -> None:
        first, second = self.login(), self.login()
        assert first.id is not None and second.id is not None
        count = self.successResultOf(
            self.bouncer.expireKeycardIds([first.id, "unknown"])
        )
        self.assertEqual(count, 1)
        self.assertEqual(self.requester.expired, [[first.id]])
        self.assertEqual(self.successResultOf(self.store.count()), 1)

    def test_expiryRemovesAtOnce(self) -> None:
        """
        Expiring several keycards asks the store to remove them all before
        any removal is done, so a store that commits writes in groups
        deletes them in one transaction.
        """
        ids = [str(self.login().id) for _ in range(3)]
        asked: list[tuple[str, Deferred[object]]] = []

        class Deferring:
            def remove(self, keycardId: str) -> Deferred[object]:
                d: Deferred[object] = Deferred()
                asked.append((keycardId, d))
                return d

        self.patch(self.bouncer._held, "store", Deferring())
        expired = self.bouncer.expireKeycardIds(ids)
        self.assertEqual([k for k, _ in asked], ids)
        self.assertNoResult(expired)
        for _, d in asked:
            d.callback(None)
        self.assertEqual(self.successResultOf(expired), 3)

    def test_keepAlive(self) -> None:
        keycard = self.login()
        assert keycard.id is not None
        self.clock.advance(50)
        renewed = self.successResultOf(self.bouncer.keepAlive("r1", [keycard.id]))
        self.assertEqual(renewed, 1)
        self.clock.advance(50)
        self.assertEqual(self.requester.expired, [])
        self.clock.advance(10)
        self.assertEqual(self.requester.expired, [[keycard.id]])

    def test_keepAliveOtherRequester(self) -> None:
        """
        A requester cannot renew keycards issued through another.
        """
        keycard = self.login()
        assert keycard.id is not None
        self.assertEqual(
            self.successResultOf(self.bouncer.keepAlive("r2", [keycard.id])), 0
        )

    def test_maxLifetime(self) -> None:
        bouncer = Bouncer(
            [self.checker], clock=self.clock, duration=60.0, maxLifetime=90.0
        )
        self.bouncer = bouncer
        bouncer.registerRequester("r1", self.requester)
        keycard = self.login()
        assert keycard.id is not None
        self.clock.advance(50)
        self.successResultOf(bouncer.keepAlive("r1", [keycard.id]))
        self.clock.advance(40)
        self.assertEqual(self.requester.expired, [[keycard.id]])

    def test_refusalLogsOneLine(self) -> None:
        """
        A refusal logs one event, with the reason, and no failure.
        """
        events: list[LogEvent] = []
        globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, events.append)  # type: ignore[arg-type]
        challenged = self.first()
        self.assertRefused(PassphraseAnswerer("alice", "nope").answer(challenged))
        refusals = [e for e in events if "refused" in e.get("log_format", "")]
        self.assertEqual(len(refusals), 1)
        self.assertNotIn("log_failure", refusals[0])
        self.assertNotIn("nope", repr(events))

    def test_duplicateChallenger(self) -> None:
        with self.assertRaises(ValueError):
            Bouncer([self.checker, PassphraseChecker({})], clock=self.clock)


class NewKeycardIdTests(SynchronousTestCase):
    def test_neverAnOption(self) -> None:
        """
        Keycard ids are 192 random bits in base64url and never start with
        C{-}, so C{keycard revoke ID} never takes one for an option.
        """
        ids = {newKeycardId() for _ in range(2000)}
        self.assertEqual(len(ids), 2000)
        self.assertFalse([i for i in ids if i.startswith("-") or len(i) != 32])
        # 0xf8 and 0xfb start with the bits of "-" in base64url.
        drawn = iter([b"\xf8" + bytes(23), b"\xfb" + bytes(23), bytes(24)])
        self.patch(bouncerModule, "urandom", lambda n: next(drawn))
        self.assertEqual(newKeycardId(), "A" * 32)
