"""
Tests for pushed store changes (L{IStoreChanges}): a bouncer whose store
publishes its changes reads a revocation made by another process at once,
not at its next follow interval; L{Follower.wake} never runs the steps
twice at once; and a step refused by the store's key-encryption key is one
line in the log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from twisted_keycard import Bouncer, MemoryStore
from twisted_keycard.bouncer import Upkeep
from twisted_keycard.bouncer._revocation import Revoker
from twisted_keycard.bouncer._upkeep import Follower
from twisted_keycard.store import IStoreChanges
from twisted_keycard.store._interfaces import REVOKED
from twisted_keycard.store.redis import WrongKeyEncryptionKey

from ._passphrase import PassphraseAnswerer, PassphraseChecker, PassphraseKeycard
from .test_tokens_bouncer import Requester

FOLLOW = 60.0


@implementer(IStoreChanges)
class PushingStore(MemoryStore):
    """
    A memory store that tells its subscribers what a test says changed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.subscribers: list[Callable[[str], object]] = []

    def subscribe(self, callback: Callable[[str], object]) -> Callable[[], None]:
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)

    def push(self, kind: str) -> None:
        for callback in list(self.subscribers):
            callback(kind)


class PushTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000.0)
        self.store = PushingStore()
        self.requester = Requester()
        self.bouncer = Bouncer(
            [PassphraseChecker({"alice": "pw"})],
            self.store,
            clock=self.clock,
            upkeep=Upkeep(followInterval=FOLLOW, leaseTime=3 * FOLLOW),
        )
        self.bouncer.registerRequester("r1", self.requester)
        self.bouncer.startService()
        self.addCleanup(self.bouncer.stopService)
        self.successResultOf(self.bouncer.started)

    def login(self) -> str:
        first = PassphraseKeycard(
            username="alice", address="192.0.2.1", requesterName="r1"
        )
        challenged = self.successResultOf(self.bouncer.authenticate(first))
        answered = PassphraseAnswerer("alice", "pw").answer(challenged)
        keycardId = self.successResultOf(self.bouncer.authenticate(answered)).id
        assert keycardId is not None
        return keycardId

    def test_pushedRevocationReadAtOnce(self) -> None:
        """
        A revocation written by another process (the keycard command) drops
        the client as soon as the store says so, with no time passing.
        """
        keycardId = self.login()
        elsewhere = Revoker(self.store, self.clock, 3600.0)
        self.successResultOf(elsewhere.revokeKeycardIds([keycardId]))
        self.assertEqual(self.requester.expired, [])
        self.store.push(REVOKED)
        self.assertEqual(self.requester.expired, [keycardId])

    def test_unsubscribedWhenStopped(self) -> None:
        self.assertEqual(len(self.store.subscribers), 1)
        self.bouncer.stopService()
        self.assertEqual(self.store.subscribers, [])
        self.store.push(REVOKED)


class WakeTests(SynchronousTestCase):
    def test_wakeDuringTick(self) -> None:
        """
        Woken while its steps run, a follower runs them once more after,
        never two at once; woken when stopped, it does nothing.
        """
        clock = Clock()
        runs: list[Deferred[None]] = []

        def step() -> Deferred[None]:
            d: Deferred[None] = Deferred()
            runs.append(d)
            return d

        follower = Follower(clock, FOLLOW, [("stepping", step)])
        follower.wake()
        self.assertEqual(runs, [])
        follower.start()
        follower.wake()
        follower.wake()
        follower.wake()
        self.assertEqual(len(runs), 1)
        runs[0].callback(None)
        self.assertEqual(len(runs), 2)
        runs[1].callback(None)
        self.assertEqual(len(runs), 2)
        follower.stop()

    def test_wrongKeyOneLine(self) -> None:
        """
        A step refused because another host rewrapped the store's secrets
        is logged as one line, without a traceback, once until its reason
        changes; other failures too, once until the step works again
        (issue 24: a traceback at every interval of an outage).
        """
        clock = Clock()
        reasons = ["wrapped under key 'a'", "wrapped under key 'a'", "key 'b'"]

        async def step() -> None:
            if reasons:
                raise WrongKeyEncryptionKey(reasons.pop(0))
            raise RuntimeError("other")

        events: list[dict[str, object]] = []
        observer: Any = events.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        follower = Follower(clock, FOLLOW, [("following the keyring", step)])
        follower.start()
        self.addCleanup(follower.stop)
        for _ in range(4):
            clock.advance(FOLLOW)
        wrong = [e for e in events if e.get("event") == "store.wrongKey"]
        self.assertEqual(
            [formatEvent(e) for e in wrong],
            [
                "following the keyring failed: wrapped under key 'a'; this"
                " bouncer keeps the keyring it loaded",
                "following the keyring failed: key 'b'; this bouncer keeps the"
                " keyring it loaded",
            ],
        )
        self.assertFalse(any("log_failure" in e for e in events))
        down = [e for e in events if e.get("event") == "store.down"]
        self.assertEqual(
            [formatEvent(e) for e in down],
            [
                "following the keyring failed: RuntimeError: other; following the"
                f" store again every {FOLLOW} s"
            ],
        )
