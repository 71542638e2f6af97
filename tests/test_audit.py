"""
Tests for the bouncer's audit events: every decision is one event with a
stable C{event} name, the account tried (escaped), the keycard kind, the
address and the requester; times in ISO 8601.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import Bouncer, KeycardDenied, KeycardRefused
from twisted_keycard.bouncer import ExchangeLimits, Quota
from twisted_keycard.scram import SCRAMAnswerer, SCRAMVerifiers, Verifier
from twisted_keycard.store._memory import MemoryStore
from twisted_keycard.testing import KeycardTestServer

from ._passphrase import PassphraseAnswerer, PassphraseChecker, PassphraseKeycard
from ._realm import AvatarRealm

HOSTILE = "eve\r\x1b[31m"
ESCAPED = "eve\\r\\x1b[31m"


class AuditTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)  # type: ignore[arg-type]
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.bouncer = Bouncer(
            [PassphraseChecker({"alice": "wonderland"})],
            MemoryStore(),
            clock=self.clock,
            quota=Quota(maxPerAvatar=1),
            limits=ExchangeLimits(maxPendingPerAddress=50),
        )

    def attempt(self, name: str, secret: str) -> Any:
        keycard = PassphraseKeycard(
            username=name, address="10.0.0.9", requesterName="web"
        )
        challenged = self.successResultOf(self.bouncer.authenticate(keycard))
        answered = PassphraseAnswerer(name, secret).answer(challenged)
        return self.bouncer.authenticate(answered)

    def decisions(self, name: str) -> list[LogEvent]:
        return [e for e in self.events if e.get("event") == name]

    def assertNames(self, event: LogEvent, account: str) -> None:
        self.assertEqual(event["account"], account)
        self.assertEqual(event["keycardType"], PassphraseKeycard.keycardType)
        self.assertEqual(event["address"], "10.0.0.9")
        self.assertEqual(event["requesterName"], "web")

    def test_issued(self) -> None:
        self.successResultOf(self.attempt("alice", "wonderland"))
        [event] = self.decisions("login.issued")
        self.assertNames(event, "alice")
        self.assertEqual(event["expires"], "2023-11-14T23:13:20+00:00")

    def test_refused(self) -> None:
        """
        A refusal names the account tried, escaped.
        """
        self.failureResultOf(self.attempt(HOSTILE, "x"), KeycardRefused)
        [event] = self.decisions("login.refused")
        self.assertNames(event, ESCAPED)
        self.assertNotIn("\x1b", repr(event))

    def test_denied(self) -> None:
        """
        A denial (here a quota) is a decision too.
        """
        self.successResultOf(self.attempt("alice", "wonderland"))
        self.failureResultOf(self.attempt("alice", "wonderland"), KeycardDenied)
        [event] = self.decisions("login.denied")
        self.assertNames(event, "alice")
        self.assertIn("too many keycards", event["reason"])

    def test_revokedAndExpired(self) -> None:
        keycard = self.successResultOf(self.attempt("alice", "wonderland"))
        self.successResultOf(self.bouncer.revokeKeycardIds([keycard.id], "test"))
        self.assertEqual(len(self.decisions("keycard.revoked")), 1)
        self.assertEqual(len(self.decisions("keycard.expired")), 1)


class IssuedOverPBTests(SynchronousTestCase):
    def test_accountOfAnswer(self) -> None:
        """
        The issued line names the account tried even when the last message
        (a SCRAM client-final, over PB) does not carry the name: the bouncer
        kept it from the first message.
        """
        events: list[LogEvent] = []
        globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, events.append)  # type: ignore[arg-type]
        server = KeycardTestServer.build(
            [SCRAMVerifiers({"alice": Verifier.fromPassword("secret", 4096)})],
            AvatarRealm(),
        )
        login = server.connect().loginWithKeycard([SCRAMAnswerer("alice", "secret")])
        self.assertEqual(self.successResultOf(login).keycard.avatarId, "alice")
        [issued] = [e for e in events if e.get("event") == "login.issued"]
        self.assertEqual(issued["account"], "alice")
