"""
Tests for the bouncer's audit events: every decision is one event with a
stable C{event} name, the account tried (escaped), the keycard kind, the
address and the requester; times in ISO 8601.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import Bouncer, KeycardDenied, KeycardRefused
from twisted_keycard.bouncer import ExchangeLimits, Quota, TokenPolicy, newKeycardId
from twisted_keycard.scram import SCRAMAnswerer, SCRAMVerifiers, Verifier
from twisted_keycard.store._memory import MemoryStore
from twisted_keycard.testing import KeycardTestServer
from twisted_keycard.tokens import (
    SigningKey,
    TokenAnswerer,
    TokenClaims,
    TokenKeycard,
    claimedAvatar,
    keycardIdOf,
    sign,
)

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


class LeavingTests(SynchronousTestCase):
    def test_leavingIsNoDecision(self) -> None:
        """
        A client that logs in and leaves writes one line, its
        C{login.issued}: its leaving is no decision, and no line reads like
        a revocation (issue 27: C{keycard <id> removed} at every
        disconnect).  Its keycard is no longer held, and not revoked.
        """
        events: list[LogEvent] = []
        globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, events.append)  # type: ignore[arg-type]
        store = MemoryStore()
        server = KeycardTestServer.build(
            [PassphraseChecker({"alice": "wonderland"})], AvatarRealm(), store=store
        )
        connection = server.connect()
        login = self.successResultOf(
            connection.loginWithKeycard([PassphraseAnswerer("alice", "wonderland")])
        )
        keycardId = login.keycard.id
        assert keycardId is not None
        connection.disconnect()
        self.assertFalse(connection.connected)
        self.assertNotIn(keycardId, server.bouncer.held)
        self.assertFalse(self.successResultOf(store.isRevoked(keycardId)))
        naming = [formatEvent(e) for e in events if keycardId in formatEvent(e)]
        self.assertEqual(len(naming), 1, naming)
        self.assertIn(f"keycard {keycardId} issued to alice", naming[0])


class TokenAuditTests(SynchronousTestCase):
    """
    A token login's audit line names the token's avatar: the verified one
    when it is issued, the one it claims when it is refused (escaped as any
    other peer value), and C{-} when the token is too malformed to name one.
    """

    def setUp(self) -> None:
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)  # type: ignore[arg-type]
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.server = KeycardTestServer.build(
            [PassphraseChecker({"alice": "wonderland"})],
            AvatarRealm(),
            clock=self.clock,
            tokens=TokenPolicy(),
        )

    def login(self, *answerers: Any) -> Any:
        return self.server.connect().loginWithKeycard(list(answerers))

    def token(self) -> str:
        login = self.successResultOf(
            self.login(PassphraseAnswerer("alice", "wonderland"))
        )
        token = login.keycard.token
        assert isinstance(token, str)
        del self.events[:]
        return token

    def decisions(self, name: str) -> list[LogEvent]:
        return [e for e in self.events if e.get("event") == name]

    def test_issuedForToken(self) -> None:
        """
        A token login over PB names the token's avatar as the account, in
        its one audit line.
        """
        token = self.token()
        login = self.successResultOf(self.login(TokenAnswerer(token)))
        self.assertEqual(login.keycard.avatarId, "alice")
        [issued] = self.decisions("login.issued")
        self.assertEqual(issued["account"], "alice")
        self.assertEqual(issued["avatarId"], "alice")
        self.assertEqual(issued["keycardType"], TokenKeycard.keycardType)
        self.assertIn("(twisted_keycard.token for alice)", issued["line"])
        self.assertEqual(self.decisions("login.refused"), [])

    def test_refusedRevoked(self) -> None:
        """
        A revoked token's refusal names the avatar it claims.
        """
        token = self.token()
        bouncer = self.server.bouncer
        self.successResultOf(bouncer.revokeKeycardIds([keycardIdOf(token)]))
        self.failureResultOf(self.login(TokenAnswerer(token)), UnauthorizedLogin)
        [refused] = self.decisions("login.refused")
        self.assertEqual(refused["account"], "alice")
        self.assertEqual(refused["reason"], "revoked token")
        self.assertEqual(refused["keycardType"], TokenKeycard.keycardType)

    def test_refusedForgedEscaped(self) -> None:
        """
        A token signed with a key the bouncer does not have is refused, and
        the avatar it claims is escaped in the line like any peer value.
        """
        now = self.clock.seconds()
        forged = sign(
            TokenClaims(newKeycardId(), HOSTILE, now, now + 60, "b", "test-requester"),
            SigningKey.generate(now),
        )
        self.failureResultOf(self.login(TokenAnswerer(forged)), UnauthorizedLogin)
        [refused] = self.decisions("login.refused")
        self.assertEqual(refused["account"], ESCAPED)
        self.assertNotIn("\x1b", repr(refused))

    def test_refusedMalformed(self) -> None:
        """
        A token too malformed to name an avatar shows C{-}.
        """
        self.failureResultOf(
            self.login(TokenAnswerer("kc2.abc.!!!")), UnauthorizedLogin
        )
        [refused] = self.decisions("login.refused")
        self.assertEqual(refused["account"], "-")

    def test_notCountedAgainstClaimedAvatar(self) -> None:
        """
        The claimed avatar is shown, never counted: a forged token naming
        alice is no failed login of the account alice.
        """
        now = self.clock.seconds()
        forged = TokenKeycard(
            presented=sign(
                TokenClaims(newKeycardId(), "alice", now, now + 60, "b"),
                SigningKey.generate(now),
            )
        )
        self.assertEqual(forged.claimedName(), "alice")
        self.assertIsNone(forged.account())


class ClaimedAvatarTests(SynchronousTestCase):
    def test_wellFormed(self) -> None:
        now = 1_700_000_000.0
        key = SigningKey.generate(now)
        token = sign(TokenClaims(newKeycardId(), "bob", now, now + 60, "b"), key)
        self.assertEqual(claimedAvatar(token), "bob")

    def test_notATokenEnough(self) -> None:
        for token in [None, 7, "", "kc2.", "kc2.abc.", "kc2.abc.AAAA", "kc1.x.y"]:
            self.assertIsNone(claimedAvatar(token), token)
