"""
Tests for tokens, revocation, quotas and seat pools in the bouncer, with a
shared L{MemoryStore} and a L{Clock}.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from twisted_keycard import (
    Bouncer,
    IRequester,
    KeycardRefused,
    KeycardState,
    MemoryStore,
)
from twisted_keycard.bouncer import Quota, Revoker, TokenPolicy
from twisted_keycard.error import QuotaExceeded
from twisted_keycard.keycard._keycard import Keycard
from twisted_keycard.tokens import TokenKeycard, verify

from ._passphrase import PassphraseAnswerer, PassphraseChecker, PassphraseKeycard

START = 1_800_000_000.0


@implementer(IRequester)
@attrs.define
class Requester:
    expired: list[str] = attrs.field(factory=list)

    def keycardIds(self) -> list[str]:
        return []

    def expireKeycardIds(self, keycardIds: Sequence[str]) -> None:
        self.expired.extend(keycardIds)


class TokenLogins(SynchronousTestCase):
    """
    Bouncers issuing tokens on one L{MemoryStore}, and logins with a
    password or a token; the tests are in subclasses.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = MemoryStore()
        self.requester = Requester()
        self.bouncer = self.makeBouncer("b1")

    def makeBouncer(
        self, name: str, requester: Requester | None = None, **options: object
    ) -> Bouncer:
        options.setdefault("tokens", TokenPolicy(claims={"vendor": "acme"}))
        bouncer = Bouncer(
            [PassphraseChecker({"alice": "wonderland", "bob": "builder"})],
            self.store,
            clock=self.clock,
            name=name,
            duration=60.0,
            **options,  # type: ignore[arg-type]
        )
        bouncer.registerRequester("r1", requester or self.requester)
        bouncer.startService()
        self.addCleanup(bouncer.stopService)
        self.successResultOf(bouncer.started)
        return bouncer

    def login(
        self,
        bouncer: Bouncer | None = None,
        username: str = "alice",
        address: str = "192.0.2.1",
    ) -> Keycard:
        bouncer = bouncer or self.bouncer
        first = PassphraseKeycard(
            username=username, address=address, requesterName="r1"
        )
        challenged = self.successResultOf(bouncer.authenticate(first))
        answered = PassphraseAnswerer(
            username, "wonderland" if username == "alice" else "builder"
        ).answer(challenged)
        return self.successResultOf(bouncer.authenticate(answered))

    def present(
        self,
        token: str | None,
        bouncer: Bouncer | None = None,
        address: str = "192.0.2.1",
    ) -> Keycard:
        keycard = TokenKeycard(presented=token, address=address, requesterName="r1")
        return self.successResultOf((bouncer or self.bouncer).authenticate(keycard))

    def refused(
        self,
        token: str | None,
        bouncer: Bouncer | None = None,
        address: str = "192.0.2.1",
    ) -> None:
        keycard = TokenKeycard(presented=token, address=address, requesterName="r1")
        self.failureResultOf(
            (bouncer or self.bouncer).authenticate(keycard), KeycardRefused
        )


class TokenBouncerTests(TokenLogins):
    def test_noTokenUnwanted(self) -> None:
        """
        A requester that will not pass a token on (C{wantsToken=0}, a PB
        client that did not ask) gets none: none is signed, and the keycard
        is issued and held as any other.
        """
        first = PassphraseKeycard(
            username="alice", address="192.0.2.1", requesterName="r1", wantsToken=0
        )
        challenged = self.successResultOf(self.bouncer.authenticate(first))
        answered = PassphraseAnswerer("alice", "wonderland").answer(challenged)
        keycard = self.successResultOf(self.bouncer.authenticate(answered))
        self.assertIs(keycard.state, KeycardState.AUTHENTICATED)
        self.assertIsNone(keycard.token)
        self.assertIn(keycard.id, self.bouncer.held)
        self.assertIsNotNone(self.login().token)

    def test_tokenIssued(self) -> None:
        keycard = self.login()
        assert keycard.token is not None
        self.assertTrue(keycard.token.startswith(f"kc2.{keycard.id}."))
        self.assertIn(TokenKeycard, self.bouncer.keycardClasses)

    def test_tokenLogin(self) -> None:
        """
        A token logs in with no password; the new keycard is the child of
        the token's keycard and has a token of its own.
        """
        parent = self.login()
        child = self.present(parent.token)
        self.assertIs(child.state, KeycardState.AUTHENTICATED)
        self.assertEqual(child.avatarId, "alice")
        self.assertNotEqual(child.id, parent.id)
        assert child.id is not None and child.token is not None
        record = self.successResultOf(self.store.get(child.id))
        assert record is not None
        self.assertEqual(record.parentId, parent.id)
        self.present(child.token)

    def test_failover(self) -> None:
        """
        Another bouncer sharing the store (and so the keyring) takes the
        token, as does a new bouncer after a restart.
        """
        token = self.login().token
        self.assertEqual(self.present(token, self.makeBouncer("b2")).avatarId, "alice")
        self.bouncer.stopService()
        self.assertEqual(self.present(token, self.makeBouncer("b1")).avatarId, "alice")

    def test_malformed(self) -> None:
        token = self.login().token
        assert token is not None
        for bad in [
            None,
            "",
            "kc1.x",
            token[:-3],
            token + "AA",
            token.replace("kc2", "kc3"),
        ]:
            self.refused(bad)

    def test_expiry(self) -> None:
        token = self.login().token
        self.clock.advance(60 + 5)
        self.present(token)
        self.clock.advance(0.01)
        self.refused(token)

    def test_wrongKeyring(self) -> None:
        token = self.login().token
        other = MemoryStore()
        bouncer = Bouncer([], other, clock=self.clock, tokens=TokenPolicy())
        bouncer.startService()
        self.addCleanup(bouncer.stopService)
        self.refused(token, bouncer)

    def test_rotation(self) -> None:
        """
        After a rotation by another bouncer, old tokens are taken during the
        grace and refused after it; new tokens are taken here too.
        """
        old = self.login().token
        other = self.makeBouncer("b2")
        assert other.keys is not None
        self.successResultOf(Deferred.fromCoroutine(other.keys.rotate(grace=30)))
        new = self.login(other).token
        self.clock.advance(10)
        self.present(new)
        self.present(old)
        self.clock.advance(21)
        self.refused(old)
        self.refused(old, other)

    def test_addressBinding(self) -> None:
        bouncer = self.makeBouncer("bound", tokens=TokenPolicy(bindAddress=True))
        token = self.login(bouncer).token
        self.present(token, bouncer)
        self.refused(token, bouncer, address="198.51.100.9")

    def test_addressBindingDualStack(self) -> None:
        """
        The binding compares normalized addresses: an IPv4 client seen as
        IPv4-mapped IPv6 (a dual-stack listener, a requester that does not
        normalize) is the same client, and another client is still refused.
        """
        bouncer = self.makeBouncer("bound", tokens=TokenPolicy(bindAddress=True))
        token = self.login(bouncer, address="::ffff:192.0.2.1").token
        self.present(token, bouncer, address="192.0.2.1")
        self.present(token, bouncer, address="::FFFF:192.0.2.1")
        self.refused(token, bouncer, address="::ffff:198.51.100.9")
        self.refused(token, bouncer, address="198.51.100.9")

    def test_revokeById(self) -> None:
        """
        A revoked keycard's token is refused, and its holder dropped.
        """
        keycard = self.login()
        assert keycard.id is not None
        self.assertEqual(
            self.successResultOf(self.bouncer.revokeKeycardIds([keycard.id], "test")), 1
        )
        self.refused(keycard.token)
        self.assertEqual(self.requester.expired, [keycard.id])
        self.assertIsNone(self.successResultOf(self.store.get(keycard.id)))

    def test_revokedBeforeRestart(self) -> None:
        """
        A token revoked before a restart is refused after it, by the new
        bouncer on the same store.
        """
        keycard = self.login()
        assert keycard.id is not None
        self.successResultOf(self.bouncer.revokeKeycardIds([keycard.id]))
        self.bouncer.stopService()
        self.refused(keycard.token, self.makeBouncer("b1"))

    def test_revokedAfterRestart(self) -> None:
        """
        A keycard issued before a restart can be revoked after it.
        """
        keycard = self.login()
        assert keycard.id is not None
        self.bouncer.stopService()
        restarted = self.makeBouncer("b1")
        self.present(keycard.token, restarted)
        self.successResultOf(restarted.revokeKeycardIds([keycard.id]))
        self.refused(keycard.token, restarted)

    def test_revokeAfterClientLeft(self) -> None:
        """
        A keycard whose client left (so no longer in the store) can still be
        revoked by id, and its token is refused.
        """
        keycard = self.login()
        assert keycard.id is not None
        self.successResultOf(self.bouncer.removeKeycardId(keycard.id))
        self.present(keycard.token)
        self.successResultOf(self.bouncer.revokeKeycardIds([keycard.id]))
        self.refused(keycard.token)

    def test_revokeParentRevokesChildren(self) -> None:
        parent = self.login()
        child = self.present(parent.token)
        grandchild = self.present(child.token)
        assert parent.id is not None
        self.successResultOf(self.bouncer.revokeKeycardIds([parent.id]))
        self.refused(child.token)
        self.refused(grandchild.token)
        self.assertEqual(
            set(self.requester.expired), {parent.id, child.id, grandchild.id}
        )

    def test_revokeLongChain(self) -> None:
        """
        Revoking the first keycard of a chain of token logins longer than
        any bound on a walk of the tree refuses every token of the chain,
        down to the last.
        """
        first = self.login()
        tokens = [first.token]
        for _ in range(10_100):
            tokens.append(self.present(tokens[-1]).token)
        other = self.login()
        assert first.id is not None
        self.successResultOf(self.bouncer.revokeKeycardIds([first.id]))
        for token in tokens[::1000] + tokens[-100:]:
            self.refused(token)
        self.present(other.token)

    def test_revokeMemberRevokesFamily(self) -> None:
        """
        Revoking any member of a family (here a middle one) revokes the
        whole family: ancestors, siblings and descendants, held or not,
        whenever they were issued; another family of the same avatar is
        left alone.
        """
        root = self.login()
        child = self.present(root.token)
        sibling = self.present(root.token)
        grandchild = self.present(child.token)
        other = self.login()
        assert child.id is not None and sibling.id is not None
        self.successResultOf(self.bouncer.removeKeycardId(sibling.id))
        count = self.successResultOf(self.bouncer.revokeKeycardIds([child.id]))
        self.assertEqual(count, 4)
        for member in (root, child, sibling, grandchild):
            self.refused(member.token)
        self.assertEqual(
            set(self.requester.expired), {root.id, child.id, grandchild.id}
        )
        self.present(other.token)

    def test_revokeExpiredParent(self) -> None:
        """
        A keycard whose record has expired still names its family through
        its children: revoking it reaches its grandchildren.
        """
        root = self.login()
        self.clock.advance(30)
        child = self.present(root.token)
        self.clock.advance(20)
        grandchild = self.present(child.token)
        self.clock.advance(11)
        assert root.id is not None
        self.assertIsNone(self.successResultOf(self.store.get(root.id)))
        self.successResultOf(self.bouncer.revokeKeycardIds([root.id]))
        self.refused(grandchild.token)

    def test_familyRevocationReachesOtherBouncer(self) -> None:
        """
        The revoking bouncer refuses a revoked family's tokens at once;
        another bouncer on the store drops the clients of the family and
        refuses its tokens from its next poll on.
        """
        otherRequester = Requester()
        other = self.makeBouncer("b2", otherRequester)
        root = self.login()
        child = self.present(root.token, other)
        stranger = self.login(other)
        assert root.id is not None
        self.successResultOf(self.bouncer.revokeKeycardIds([root.id]))
        self.refused(child.token)
        self.clock.advance(1.0)
        self.assertEqual(otherRequester.expired, [child.id])
        self.refused(child.token, other)
        self.present(stranger.token, other)

    def test_familyRevocationKeptUntilFamilyEnds(self) -> None:
        """
        A family's mark is kept as long as its last token lives, and then
        flushed.
        """
        root = self.login()
        self.clock.advance(50)
        child = self.present(root.token)
        assert root.id is not None and child.id is not None
        self.successResultOf(self.bouncer.revokeKeycardIds([root.id]))
        mark = "family:" + root.id
        self.clock.advance(60)
        self.successResultOf(self.bouncer.flush())
        self.assertTrue(self.successResultOf(self.store.isRevoked(mark)))
        self.refused(child.token)
        self.clock.advance(6)
        self.successResultOf(self.bouncer.flush())
        self.assertFalse(self.successResultOf(self.store.isRevoked(mark)))

    def test_audience(self) -> None:
        """
        By default a token is accepted only through the requester it was
        issued through: not through another, nor at the bouncer itself.
        """
        token = self.login().token
        for requesterName in ("r2", "bouncer", None):
            keycard = TokenKeycard(
                presented=token, address="192.0.2.1", requesterName=requesterName
            )
            self.failureResultOf(self.bouncer.authenticate(keycard), KeycardRefused)
        self.present(token)

    def test_audiences(self) -> None:
        """
        With configured audiences a token is accepted through them and its
        own requester, and through no other; its children too.
        """
        bouncer = self.makeBouncer("apps", tokens=TokenPolicy(audiences={"r2", "r3"}))
        token = self.login(bouncer).token
        for requesterName in ("r2", "r3", "r1"):
            keycard = TokenKeycard(
                presented=token, address="192.0.2.1", requesterName=requesterName
            )
            issued = self.successResultOf(bouncer.authenticate(keycard))
            self.assertEqual(issued.avatarId, "alice")
        child = TokenKeycard(
            presented=issued.token, address="192.0.2.1", requesterName="r4"
        )
        self.failureResultOf(bouncer.authenticate(child), KeycardRefused)
        assert bouncer.keys is not None and issued.token is not None
        keyring = self.successResultOf(Deferred.fromCoroutine(bouncer.keys.current()))
        claims = verify(issued.token, keyring, self.clock.seconds())
        self.assertEqual(claims.audience, ("r1", "r2", "r3"))

    def test_familyLifetime(self) -> None:
        """
        A chain of token logins ends when its family's lifetime since the
        password login ends: a child token's expiry never exceeds it.
        """
        bouncer = self.makeBouncer("short", tokens=TokenPolicy(maxFamilyLifetime=100))
        root = self.login(bouncer)
        assert bouncer.keys is not None
        keyring = self.successResultOf(Deferred.fromCoroutine(bouncer.keys.current()))
        self.clock.advance(50)
        child = self.present(root.token, bouncer)
        assert child.token is not None
        self.assertEqual(
            verify(child.token, keyring, self.clock.seconds()).expires, START + 100
        )
        self.clock.advance(49)
        grandchild = self.present(child.token, bouncer)
        self.clock.advance(1)
        self.refused(grandchild.token, bouncer)
        fresh = self.login(bouncer)
        self.present(fresh.token, bouncer)

    def test_familyLifetimeLowered(self) -> None:
        """
        A bouncer with a shorter family lifetime refuses tokens of older
        families, though they have not expired.
        """
        token = self.login().token
        self.clock.advance(50)
        strict = self.makeBouncer("strict", tokens=TokenPolicy(maxFamilyLifetime=40))
        self.refused(token, strict)
        self.present(token)

    def test_defaultFamilyLifetime(self) -> None:
        self.assertEqual(TokenPolicy().maxFamilyLifetime, 24 * 3600)
        self.assertRaises(ValueError, TokenPolicy, maxFamilyLifetime=0)

    def test_revokeAvatar(self) -> None:
        """
        Revoking an avatar refuses every token issued to it before, even of
        keycards no longer held; a login after it works.
        """
        held = self.login()
        gone = self.login()
        bob = self.login(username="bob")
        assert gone.id is not None
        self.successResultOf(self.bouncer.removeKeycardId(gone.id))
        self.clock.advance(1)
        self.successResultOf(self.bouncer.revokeAvatar("alice", "left the company"))
        self.refused(held.token)
        self.refused(gone.token)
        self.present(bob.token)
        self.assertEqual(self.requester.expired, [held.id])
        self.clock.advance(1)
        fresh = self.login()
        self.present(fresh.token)

    def test_revokeRequester(self) -> None:
        keycard = self.login()
        self.clock.advance(1)
        self.successResultOf(self.bouncer.revokeRequester("r1"))
        self.refused(keycard.token)
        self.assertEqual(self.requester.expired, [keycard.id])

    def test_revocationReachesOtherBouncer(self) -> None:
        """
        A bouncer drops the clients of keycards another bouncer revoked,
        at its next poll of the shared store.
        """
        otherRequester = Requester()
        other = self.makeBouncer("b2", otherRequester)
        keycard = self.login(other)
        assert keycard.id is not None
        self.successResultOf(self.bouncer.revokeKeycardIds([keycard.id]))
        self.assertEqual(otherRequester.expired, [])
        self.clock.advance(1.0)
        self.assertEqual(otherRequester.expired, [keycard.id])

    def test_avatarRevocationReachesOtherBouncer(self) -> None:
        otherRequester = Requester()
        other = self.makeBouncer("b2", otherRequester)
        keycard = self.login(other)
        self.clock.advance(1)
        self.successResultOf(self.bouncer.revokeAvatar("alice"))
        self.clock.advance(1.0)
        self.assertEqual(otherRequester.expired, [keycard.id])

    def test_revokerAlone(self) -> None:
        """
        A L{Revoker} on the store, with no bouncer (as the C{keycard revoke}
        command uses it), makes the bouncers sharing the store refuse the
        token and drop its client at their next poll.
        """
        self.clock.advance(0.5)
        keycard = self.login()
        assert keycard.id is not None
        revoked: list[list[str]] = []

        async def onRevoked(ids: list[str]) -> None:
            revoked.append(ids)

        revoker = Revoker(self.store, self.clock, 65.0, onRevoked)
        self.clock.advance(0.25)
        self.assertEqual(self.successResultOf(revoker.revokeAvatar("alice")), 1)
        self.assertEqual(revoked, [[keycard.id]])
        self.assertEqual(self.requester.expired, [])
        self.clock.advance(0.25)
        self.assertEqual(self.requester.expired, [keycard.id])
        self.refused(keycard.token)

    def test_revokerNeedsRevocationStore(self) -> None:
        """
        A store that keeps no revocations cannot back a L{Revoker}.
        """
        self.assertRaises(ValueError, Revoker, object(), self.clock, 1.0)

    def test_flush(self) -> None:
        keycard = self.login()
        assert keycard.id is not None
        self.successResultOf(self.bouncer.revokeKeycardIds([keycard.id]))
        self.assertTrue(self.successResultOf(self.store.isRevoked(keycard.id)))
        self.clock.advance(60 + 5 + 1)
        self.successResultOf(self.bouncer.flush())
        self.assertFalse(self.successResultOf(self.store.isRevoked(keycard.id)))

    def test_flushLoop(self) -> None:
        """
        The service flushes expired revocations by itself.
        """
        keycard = self.login()
        assert keycard.id is not None
        self.successResultOf(self.bouncer.revokeKeycardIds([keycard.id]))
        self.clock.advance(300)
        self.assertFalse(self.successResultOf(self.store.isRevoked(keycard.id)))

    def test_stopLeavesNoTimers(self) -> None:
        self.login()
        self.bouncer.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class QuotaTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore()

    def bouncer(self, quota: Quota) -> Bouncer:
        return Bouncer(
            [PassphraseChecker({f"u{i}": "pw" for i in range(10)})],
            self.store,
            clock=self.clock,
            quota=quota,
        )

    def attempt(self, bouncer: Bouncer, username: str) -> Deferred[Keycard]:
        first = PassphraseKeycard(username=username, requesterName="r1")
        challenged = self.successResultOf(bouncer.authenticate(first))
        answered = PassphraseAnswerer(username, "pw").answer(challenged)
        return bouncer.authenticate(answered)

    def test_perAvatar(self) -> None:
        bouncer = self.bouncer(Quota(maxPerAvatar=2))
        first = self.successResultOf(self.attempt(bouncer, "u1"))
        self.successResultOf(self.attempt(bouncer, "u1"))
        failure = self.failureResultOf(self.attempt(bouncer, "u1"), QuotaExceeded)
        self.assertIn("avatar", failure.getErrorMessage())
        self.successResultOf(self.attempt(bouncer, "u2"))
        assert first.id is not None
        self.successResultOf(bouncer.removeKeycardId(first.id))
        self.successResultOf(self.attempt(bouncer, "u1"))

    def test_seatPoolSharedByBouncers(self) -> None:
        """
        Two bouncers on one store share the pool: never more seats than it
        has; a seat comes back when its keycard expires.
        """
        quota = Quota(seatPool="flux", seats=3)
        one, two = self.bouncer(quota), self.bouncer(quota)
        for i, bouncer in enumerate([one, two, one]):
            self.successResultOf(self.attempt(bouncer, f"u{i}"))
        failure = self.failureResultOf(self.attempt(two, "u5"), QuotaExceeded)
        self.assertIn("flux", failure.getErrorMessage())
        self.clock.advance(3600)
        self.successResultOf(self.attempt(two, "u5"))
