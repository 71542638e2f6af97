"""
Tests for the revocations a running bouncer keeps in memory
(L{twisted_keycard.bouncer._revocation.RevocationMirror}) and for token checks
answered from them, with no store round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import Bouncer, MemoryStore
from twisted_keycard.bouncer import TokenPolicy
from twisted_keycard.error import KeycardDenied, ProtocolError
from twisted_keycard.store import Revocation
from twisted_keycard.tokens import (
    Keyring,
    KeyringHolder,
    TokenChecker,
    TokenClaims,
    TokenExchange,
    TokenKeycard,
    sign,
)
from twisted_keycard.tokens._checker import BUCKET, STORE_DOWN, RevocationMirror

from .test_tokens_bouncer import START, Requester, TokenLogins


class RevocationMirrorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.mirror = RevocationMirror(self.clock, grace=5.0)

    def test_lookUps(self) -> None:
        """
        It answers as a store would: by id, and the revocations of several
        keys (marks too) in one look-up.
        """
        mark = Revocation("avatar:alice", START + 100, START - 1)
        self.mirror.update([Revocation("k1", START + 100, START), mark])
        self.assertTrue(self.mirror.isRevoked("k1"))
        self.assertFalse(self.mirror.isRevoked("k2"))
        self.assertEqual(
            self.mirror.revocationsOf(["k2", "avatar:alice", "family:f"]), [mark]
        )

    def test_marksCounted(self) -> None:
        """
        It counts the marks it holds, not the ids, each once, until the
        purge forgets them.
        """
        self.mirror.update(
            [
                Revocation("k1", START + 10, START),
                Revocation("avatar:alice", START + 10, START),
                Revocation("family:f", START + 1e4, START),
            ]
        )
        self.mirror.update([Revocation("avatar:alice", START + 20, START + 1)])
        self.assertEqual(self.mirror.marks, 2)
        self.clock.advance(3 * BUCKET)
        self.mirror.update([])
        self.assertEqual(self.mirror.marks, 1)
        self.assertEqual(len(self.mirror), 1)

    def test_laterExpiryKept(self) -> None:
        """
        Revoked twice, an id keeps the later expiry, as in a store.
        """
        late = Revocation("k1", START + 200, START)
        self.mirror.update([late])
        self.mirror.update([Revocation("k1", START + 100, START + 1)])
        self.assertEqual(self.mirror.revocationsOf(["k1"]), [late])
        later = Revocation("k1", START + 300, START + 2)
        self.mirror.update([later])
        self.assertEqual(self.mirror.revocationsOf(["k1"]), [later])

    def test_boundedByExpiry(self) -> None:
        """
        A revocation stays in force until its expiry and the grace have
        passed; then it is forgotten, at an update (a follower's poll).
        """
        self.mirror.update(
            [Revocation("k1", START + 10, START), Revocation("k2", START + 1e4, START)]
        )
        self.clock.advance(15)
        self.assertTrue(self.mirror.isRevoked("k1"))
        self.clock.advance(1)
        self.assertFalse(self.mirror.isRevoked("k1"))
        self.assertEqual(self.mirror.revocationsOf(["k1"]), [])
        self.assertEqual(len(self.mirror), 2)
        self.clock.advance(2 * BUCKET)
        self.mirror.update([])
        self.assertEqual(len(self.mirror), 1)
        self.assertTrue(self.mirror.isRevoked("k2"))

    def test_reRevokedNotPurged(self) -> None:
        """
        An id revoked again with a later expiry outlives the purge of its
        first expiry.
        """
        self.mirror.update([Revocation("k1", START + 10, START)])
        self.mirror.update([Revocation("k1", START + 1e4, START + 1)])
        self.clock.advance(3 * BUCKET)
        self.mirror.update([])
        self.assertTrue(self.mirror.isRevoked("k1"))


class Unreadable(MemoryStore):
    """
    A memory store whose revocations cannot be read: a check that asks it
    fails.
    """

    def isRevoked(self, keycardId: str) -> Deferred[bool]:
        return fail(RuntimeError("the store was asked"))

    def revocationsOf(self, keycardIds: Sequence[str]) -> Deferred[list[Revocation]]:
        return fail(RuntimeError("the store was asked"))


class MirroredCheckTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = Unreadable()
        self.keyring = Keyring.generate(START)
        self.store.saveKeyring(self.keyring)
        self.keys = KeyringHolder(self.store, self.clock)
        self.successResultOf(Deferred.fromCoroutine(self.keys.load()))
        self.mirror = RevocationMirror(self.clock)
        self.mirror.followed = True
        self.mirror.readAt = START
        self.checker = TokenChecker(
            self.store, self.keys, self.clock, mirror=self.mirror
        )

    def token(self, keycardId: str = "k1", **claims: Any) -> TokenExchange:
        values: dict[str, Any] = {
            "keycardId": keycardId,
            "avatarId": "alice",
            "issued": START,
            "expires": START + 60,
            "bouncerName": "b1",
            "requesterName": "r1",
        }
        values.update(claims)
        token = sign(TokenClaims(**values), self.keyring.signing)
        return TokenExchange(token, "192.0.2.1", "r1")

    def test_noStoreRoundTrip(self) -> None:
        """
        With a followed mirror and the keyring loaded, a check is answered
        at once, without the store.
        """
        exchange = self.token()
        self.assertEqual(
            self.successResultOf(self.checker.requestAvatarId(exchange)), "alice"
        )
        assert exchange.parentToken is not None
        self.assertEqual(exchange.parentToken.keycardId, "k1")

    def test_refusedByMirror(self) -> None:
        """
        Revocations by id, by family, and by avatar for tokens issued
        before it, all refused from the mirror.
        """
        self.mirror.update(
            [
                Revocation("k1", START + 100, START),
                Revocation("family:k2", START + 100, START),
                Revocation("avatar:bob", START + 100, START + 1),
            ]
        )
        for exchange, why in [
            (self.token("k1"), "revoked token"),
            (self.token("k2"), "family revoked"),
            (self.token("k3", avatarId="bob"), "revoked by avatar"),
        ]:
            failure = self.failureResultOf(
                self.checker.requestAvatarId(exchange), ProtocolError
            )
            self.assertIn(why, failure.getErrorMessage())
        later = self.token("k4", avatarId="bob", issued=START + 2)
        self.assertEqual(
            self.successResultOf(self.checker.requestAvatarId(later)), "bob"
        )

    def test_parentRevoked(self) -> None:
        """
        A token whose parent keycard is revoked is refused from the mirror,
        whether or not the mirror holds any marks.
        """
        self.mirror.update([Revocation("p1", START + 100, START)])
        for marks in ([], [Revocation("avatar:bob", START + 100, START)]):
            self.mirror.update(marks)
            failure = self.failureResultOf(
                self.checker.requestAvatarId(self.token("k5", parentId="p1")),
                ProtocolError,
            )
            self.assertIn("parent keycard revoked", failure.getErrorMessage())
            exchange = self.token("k6", parentId="p2")
            self.assertEqual(
                self.successResultOf(self.checker.requestAvatarId(exchange)),
                "alice",
            )

    def test_malformed(self) -> None:
        exchange = TokenExchange("kc2.nonsense", "192.0.2.1", "r1")
        self.failureResultOf(self.checker.requestAvatarId(exchange), ProtocolError)

    def test_withoutMirrorAsksStore(self) -> None:
        """
        Without a mirror the store is asked.
        """
        checker = TokenChecker(self.store, self.keys, self.clock)
        failure = self.failureResultOf(checker.requestAvatarId(self.token()))
        self.assertIn("the store was asked", failure.getErrorMessage())

    def test_unfollowedMirrorAsksStore(self) -> None:
        """
        A mirror not (or no longer) followed may lack revocations: the
        store is asked.
        """
        self.mirror.followed = False
        failure = self.failureResultOf(self.checker.requestAvatarId(self.token()))
        self.assertIn("the store was asked", failure.getErrorMessage())


def tokenChecker(bouncer: Bouncer) -> TokenChecker:
    """
    The checker of C{bouncer}'s token keycards.
    """
    challengers = bouncer._authentication.challengers
    checker = challengers.challenger(TokenKeycard.keycardType)
    assert isinstance(checker, TokenChecker)
    return checker


class BouncerMirrorTests(TokenLogins):
    def test_startsCaughtUp(self) -> None:
        """
        A bouncer started on a store that already holds revocations refuses
        their tokens from its mirror: it read every revocation in force,
        not only those after a cursor.
        """
        keycard = self.login()
        assert keycard.id is not None
        self.successResultOf(self.bouncer.revokeKeycardIds([keycard.id]))
        other = self.makeBouncer("b2")
        checker = tokenChecker(other)
        assert checker.mirror is not None
        self.assertTrue(checker.mirror.followed)
        checker.revocations = Unreadable()
        self.refused(keycard.token, other)

    def test_windowElsewhere(self) -> None:
        """
        A revocation made through another bouncer takes effect here at this
        bouncer's next poll of the store (the follow interval); one made
        here, at once.
        """
        other = self.makeBouncer("b2")
        first, second = self.login(), self.login()
        assert first.id is not None and second.id is not None
        self.successResultOf(other.revokeKeycardIds([first.id]))
        self.refused(first.token, other)
        self.present(first.token)
        self.clock.advance(1.0)
        self.refused(first.token)
        self.successResultOf(self.bouncer.revokeKeycardIds([second.id]))
        self.refused(second.token)

    def test_stoppedAsksStore(self) -> None:
        """
        A stopped bouncer, no longer following the store, checks tokens
        against the store again.
        """
        checker = tokenChecker(self.bouncer)
        assert checker.mirror is not None
        self.assertTrue(checker.mirror.followed)
        self.bouncer.stopService()
        self.assertFalse(checker.mirror.followed)


class StoreDownTests(TokenLogins):
    """
    While a running bouncer cannot read its store's revocations, tokens are
    denied by default, or checked against the revocations read until then
    with C{whenStoreDown="accept"} (issue 24: they were accepted whatever
    the setting); one log line when reads start failing and one when they
    work again.
    """

    def setUp(self) -> None:
        self.events: list[LogEvent] = []
        observer: Any = self.events.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        super().setUp()

    def makeBouncer(
        self, name: str, requester: Requester | None = None, **options: object
    ) -> Bouncer:
        # The store every bouncer of the test shares, made once.
        if not isinstance(self.store, DownStore):
            self.store = self.downStore = DownStore()
        return super().makeBouncer(name, requester, **options)

    def outage(self, seconds: float) -> None:
        self.downStore.down = True
        for _ in range(int(seconds)):
            self.clock.advance(1.0)

    def test_refusedByDefault(self) -> None:
        keycard = self.login()
        self.present(keycard.token)
        self.outage(2)
        # Within three follow intervals of the last read: still taken.
        self.present(keycard.token)
        self.clock.advance(2)
        denied = TokenKeycard(
            presented=keycard.token, address="192.0.2.1", requesterName="r1"
        )
        failure = self.failureResultOf(self.bouncer.authenticate(denied), KeycardDenied)
        self.assertEqual(failure.getErrorMessage(), STORE_DOWN)
        # A password login still works.
        self.assertIsNotNone(self.login().id)
        self.downStore.down = False
        self.clock.advance(1.0)
        self.present(keycard.token)
        down = [e for e in self.events if e.get("event") == "store.down"]
        up = [e for e in self.events if e.get("event") == "store.up"]
        self.assertEqual(len(down), 1, [formatEvent(e) for e in down])
        self.assertEqual(len(up), 1)
        self.assertIn("ConnectionError: store unreachable", formatEvent(down[0]))
        self.assertFalse([e for e in self.events if e.get("log_failure")])

    def test_accepted(self) -> None:
        """
        With C{whenStoreDown="accept"}, a token is checked against the
        revocations read before the outage.
        """
        self.bouncer = self.makeBouncer(
            "b2", tokens=TokenPolicy(claims={"vendor": "acme"}, whenStoreDown="accept")
        )
        keycard, revoked = self.login(), self.login()
        assert revoked.id is not None
        self.successResultOf(self.bouncer.revokeKeycardIds([revoked.id]))
        self.outage(10)
        self.present(keycard.token)
        self.refused(revoked.token)

    def test_badSetting(self) -> None:
        self.assertRaises(ValueError, TokenPolicy, whenStoreDown="maybe")


class DownStore(MemoryStore):
    """
    A memory store whose revocations cannot be read while C{down}.
    """

    down = False

    def revokedSince(self, cursor: int, limit: int) -> Deferred[Any]:
        if self.down:
            return fail(ConnectionError("store unreachable"))
        return super().revokedSince(cursor, limit)
