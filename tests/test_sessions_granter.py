"""
The bouncer's side of brokered sessions, in one process: the ticket table,
the granter's checks, and the bouncer's observers of ended keycards.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_keycard.error import SessionRefused
from twisted_keycard.sessions import (
    ISessionListener,
    ITicketRedeemer,
    SessionGrant,
    TicketGranter,
    TicketLimits,
)
from twisted_keycard.sessions._interfaces import SessionKeys, Transcript, sessionSecret
from twisted_keycard.testing import KeycardTestServer

from ._passphrase import PassphraseAnswerer, PassphraseChecker
from ._realm import AvatarRealm

SECRETS = {"alice": "wonderland", "bob": "builder"}
REQUESTER = "front"


@implementer(ISessionListener)
class Listener:
    def __init__(self) -> None:
        self.ended: list[list[str]] = []
        self.all = 0

    def endSessions(self, sessionIds: Sequence[str]) -> None:
        self.ended.append(list(sessionIds))

    def endAllSessions(self) -> None:
        self.all += 1


class GranterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = KeycardTestServer.build(
            [PassphraseChecker(SECRETS)],
            AvatarRealm(),
            requesterName=REQUESTER,
            duration=100,
            # The root renews keycards while their clients stay: past this
            # they expire as they did before renewal.
            maxLifetime=100,
        )
        self.clock = self.server.clock
        self.bouncer = self.server.bouncer
        self.granter = TicketGranter(self.bouncer, self.clock, TicketLimits(timeout=5))
        self.addCleanup(self.granter.stop)
        self.chat = self.granter.register("chat")
        self.listener = Listener()
        self.chat.listen(self.listener)
        self.alice = self.keycardOf("alice")

    def keycardOf(self, name: str) -> str:
        connection = self.server.connect()
        login = self.successResultOf(
            connection.loginWithKeycard([PassphraseAnswerer(name, SECRETS[name])])
        )
        keycardId = login.keycard.id
        assert keycardId is not None
        return keycardId

    def grant(self, keycardId: str | None = None, **kwargs: object) -> SessionGrant:
        options: dict[str, object] = {"avatarId": "alice", "requesterName": REQUESTER}
        options.update(kwargs)
        d = self.granter.grant(
            keycardId or self.alice,
            "chat",
            **options,  # type: ignore[arg-type]
        )
        return self.successResultOf(d)

    def refusedGrant(self, keycardId: str, service: str = "chat", **kw: object) -> None:
        options: dict[str, object] = {"avatarId": "alice", "requesterName": REQUESTER}
        options.update(kw)
        d = self.granter.grant(keycardId, service, **options)  # type: ignore[arg-type]
        self.assertEqual(
            self.failureResultOf(d, SessionRefused).getErrorMessage(), "session refused"
        )

    def establish(self, grant: SessionGrant) -> None:
        self.successResultOf(self.chat.redeem(grant.ticketId))
        self.successResultOf(
            self.chat.confirm(grant.ticketId, *self.confirmation(grant))
        )

    def confirmation(self, grant: SessionGrant) -> tuple[bytes, bytes, bytes]:
        clientNonce, serviceNonce = os.urandom(32), os.urandom(32)
        keys = SessionKeys.derive(grant.secret)
        transcript = Transcript(
            grant.ticketId,
            grant.clientName,
            grant.serviceName,
            clientNonce,
            serviceNonce,
        )
        proof = transcript.serviceProof(keys)
        return clientNonce, serviceNonce, transcript.clientConfirmation(keys, proof)

    def test_interfaces(self) -> None:
        verifyObject(ITicketRedeemer, self.chat)

    def test_grant(self) -> None:
        """
        A grant names both ends as the bouncer knows them, expires within
        the ticket timeout, and hides its secret from its repr.
        """
        grant = self.grant()
        self.assertEqual((grant.clientName, grant.serviceName), ("alice", "chat"))
        self.assertEqual(grant.expires, self.clock.seconds() + 5)
        self.assertNotIn(repr(grant.secret), repr(grant))
        self.assertEqual(len(self.granter.table), 1)

    def test_grantNeverOutlivesTheKeycard(self) -> None:
        self.clock.advance(98)
        self.assertEqual(self.grant().expires, self.bouncer.held[self.alice].expires)

    def test_grantRefusals(self) -> None:
        """
        No ticket without the client's own keycard, held, issued through
        the requester asking and to the address asking, for a service that
        listens.
        """
        self.refusedGrant("no such keycard")
        self.refusedGrant(self.alice, avatarId="bob")
        self.refusedGrant(self.alice, requesterName="another")
        self.refusedGrant(self.alice, address="192.0.2.99")
        self.refusedGrant(self.alice, "files")
        self.granter.register("files")  # registered, but not listening
        self.refusedGrant(self.alice, "files")
        self.assertEqual(len(self.granter.table), 0)

    def assertRedeemable(self, grant: SessionGrant, redeemable: bool = True) -> None:
        d = self.chat.redeem(grant.ticketId)
        if redeemable:
            self.assertEqual(self.successResultOf(d), grant)
        else:
            self.failureResultOf(d, SessionRefused)

    def test_keycardNewestPushesItsOldest(self) -> None:
        """
        A keycard at its share of tickets gets a new one, which pushes out
        its own oldest: that one can no longer be redeemed.
        """
        self.granter.table.limits = TicketLimits(maxPending=3, maxPendingPerKeycard=2)
        grants = [self.grant() for _ in range(3)]
        self.assertEqual(len(self.granter.table), 2)
        self.assertRedeemable(grants[0], False)
        self.assertRedeemable(grants[1])
        self.assertRedeemable(grants[2])

    def test_avatarShareAcrossKeycards(self) -> None:
        """
        However many keycards one avatar holds, its tickets never pass its
        share: its newest push out its own oldest, and another avatar's
        ticket stays.
        """
        self.granter.table.limits = TicketLimits(
            maxPending=100, maxPendingPerKeycard=16, maxPendingPerAvatar=8
        )
        bob = self.grant(self.keycardOf("bob"), avatarId="bob")
        keycards = [self.keycardOf("alice") for _ in range(5)]
        grants = [self.grant(k) for _ in range(4) for k in keycards]
        self.assertEqual(self.granter.table.pendingOf("alice"), 8)
        self.assertEqual(len(self.granter.table), 9)
        self.assertRedeemable(bob)
        self.assertRedeemable(grants[11], False)
        self.assertRedeemable(grants[12])
        self.assertRedeemable(grants[-1])

    def test_fullTableLargestGivesWay(self) -> None:
        """
        When every place is taken, another avatar's ticket pushes out the
        oldest of the avatar holding the most, which from then on pushes
        out its own: one account cannot keep others out.
        """
        self.granter.table.limits = TicketLimits(
            maxPending=10, maxPendingPerKeycard=16, maxPendingPerAvatar=10
        )
        grants = [self.grant() for _ in range(10)]
        bob = self.keycardOf("bob")
        bobs = [self.grant(bob, avatarId="bob")]
        self.assertRedeemable(grants[0], False)
        more = [self.grant() for _ in range(20)]
        bobs.append(self.grant(bob, avatarId="bob"))
        self.assertEqual(len(self.granter.table), 10)
        self.assertEqual(self.granter.table.pendingOf("bob"), 2)
        for grant in bobs:
            self.assertRedeemable(grant)
        self.assertRedeemable(more[-1])
        self.assertRedeemable(grants[-1], False)

    def test_pushedOutLogged(self) -> None:
        """
        A ticket pushed out is an audit event naming its avatar.
        """
        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, events.append)  # type: ignore[arg-type]
        self.granter.table.limits = TicketLimits(maxPendingPerKeycard=1)
        self.grant()
        self.grant()
        pushed = [e for e in events if e.get("event") == "session.pushed"]
        self.assertEqual(len(pushed), 1)
        self.assertEqual(pushed[0]["clientName"], "alice")

    def test_sessionsPerKeycardBounded(self) -> None:
        self.granter.table.limits = TicketLimits(maxSessionsPerKeycard=1)
        self.establish(self.grant())
        self.refusedGrant(self.alice)

    def test_expiry(self) -> None:
        """
        Tickets expire on one timer, whatever their number.
        """
        before = len(self.clock.getDelayedCalls())  # the keycard's, its renewal's
        grants = [self.grant() for _ in range(10)]
        self.assertEqual(len(self.clock.getDelayedCalls()), before + 1)
        self.clock.advance(5)
        self.assertEqual(len(self.granter.table), 0)
        d = self.chat.redeem(grants[0].ticketId)
        self.failureResultOf(d, SessionRefused)

    def test_redeemOnce(self) -> None:
        grant = self.grant()
        redeemed = self.successResultOf(self.chat.redeem(grant.ticketId))
        self.assertEqual(redeemed, grant)
        self.failureResultOf(self.chat.redeem(grant.ticketId), SessionRefused)
        # Spent: not even the service that redeemed it first may confirm it.
        d = self.chat.confirm(grant.ticketId, *self.confirmation(grant))
        self.failureResultOf(d, SessionRefused)

    def test_redeemByAnotherService(self) -> None:
        files = self.granter.register("files")
        files.listen(Listener())
        grant = self.grant()
        self.failureResultOf(files.redeem(grant.ticketId), SessionRefused)
        self.failureResultOf(self.chat.redeem(grant.ticketId), SessionRefused)

    def test_confirm(self) -> None:
        grant = self.grant()
        self.establish(grant)
        self.assertEqual(len(self.granter.table), 0)
        self.assertEqual(self.granter.table.sessionIds(), [grant.ticketId])

    def test_confirmChecksTheConfirmation(self) -> None:
        """
        The bouncer checks the client's confirmation itself, and a wrong
        one spends the ticket.
        """
        grant = self.grant()
        self.successResultOf(self.chat.redeem(grant.ticketId))
        clientNonce, serviceNonce, confirmation = self.confirmation(grant)
        d = self.chat.confirm(grant.ticketId, serviceNonce, clientNonce, confirmation)
        self.failureResultOf(d, SessionRefused)
        d = self.chat.confirm(grant.ticketId, clientNonce, serviceNonce, confirmation)
        self.failureResultOf(d, SessionRefused)
        self.assertEqual(self.granter.table.sessionIds(), [])

    def test_confirmUnredeemed(self) -> None:
        grant = self.grant()
        d = self.chat.confirm(grant.ticketId, *self.confirmation(grant))
        self.failureResultOf(d, SessionRefused)

    def test_confirmAfterTheKeycardEnded(self) -> None:
        grant = self.grant()
        self.successResultOf(self.chat.redeem(grant.ticketId))
        self.successResultOf(self.bouncer.expireKeycardIds([self.alice]))
        d = self.chat.confirm(grant.ticketId, *self.confirmation(grant))
        self.failureResultOf(d, SessionRefused)

    def test_keycardEnds(self) -> None:
        """
        When a client's keycard ends, its tickets go and the service is
        told to end its sessions; other clients' stay.
        """
        grant = self.grant()
        self.establish(grant)
        pending = self.grant()
        bob = self.keycardOf("bob")
        bobs = self.grant(bob, avatarId="bob")
        self.establish(bobs)
        self.successResultOf(self.bouncer.revokeKeycardIds([self.alice]))
        self.assertEqual(self.listener.ended, [[grant.ticketId]])
        self.assertEqual(self.granter.table.sessionIds(), [bobs.ticketId])
        self.failureResultOf(self.chat.redeem(pending.ticketId), SessionRefused)

    def test_eachRegistrationToldOfItsOwn(self) -> None:
        """
        Two connections of one service each hear of their own sessions.
        """
        second = self.granter.register("chat")
        listener = Listener()
        second.listen(listener)
        first, other = self.grant(), self.grant()
        self.establish(first)
        self.successResultOf(second.redeem(other.ticketId))
        self.successResultOf(second.confirm(other.ticketId, *self.confirmation(other)))
        self.successResultOf(self.bouncer.expireKeycardIds([self.alice]))
        self.assertEqual(self.listener.ended, [[first.ticketId]])
        self.assertEqual(listener.ended, [[other.ticketId]])

    def test_ended(self) -> None:
        """
        A service ends only its own sessions.
        """
        grant = self.grant()
        self.establish(grant)
        files = self.granter.register("files")
        files.listen(Listener())
        self.successResultOf(files.ended([grant.ticketId]))
        self.assertEqual(self.granter.table.sessionIds(), [grant.ticketId])
        self.successResultOf(self.chat.ended([grant.ticketId]))
        self.assertEqual(self.granter.table.sessionIds(), [])
        self.successResultOf(self.bouncer.expireKeycardIds([self.alice]))
        self.assertEqual(self.listener.ended, [])

    def test_close(self) -> None:
        """
        A registration closed forgets its sessions and redeems nothing;
        tickets are no longer granted for a service that nobody listens
        for.
        """
        grant, later = self.grant(), self.grant()
        self.establish(grant)
        self.chat.close()
        self.assertEqual(self.granter.table.sessionIds(), [])
        self.failureResultOf(self.chat.redeem(later.ticketId), SessionRefused)
        self.refusedGrant(self.alice)

    def test_stop(self) -> None:
        """
        A granter that stops leaves no timer and tells every service to end
        its sessions: nothing could revoke them any more.
        """
        before = set(self.clock.getDelayedCalls())  # the keycard's, its renewal's
        self.establish(self.grant())
        self.grant()
        self.granter.stop()
        self.assertEqual(set(self.clock.getDelayedCalls()), before)
        self.assertEqual(self.listener.all, 1)
        self.assertEqual(self.granter.table.sessionIds(), [])


class EndObserverTests(SynchronousTestCase):
    """
    L{Bouncer.addEndObserver}: the hook that ends sessions with keycards.
    """

    def setUp(self) -> None:
        self.server = KeycardTestServer.build(
            [PassphraseChecker(SECRETS)], AvatarRealm(), duration=100, maxLifetime=100
        )
        self.ended: list[list[str]] = []
        self.server.bouncer.addEndObserver(self.ended.append)
        self.connection = self.server.connect()
        login = self.successResultOf(
            self.connection.loginWithKeycard(
                [PassphraseAnswerer("alice", "wonderland")]
            )
        )
        assert login.keycard.id is not None
        self.keycardId = login.keycard.id

    def test_expiry(self) -> None:
        self.server.clock.advance(100)
        self.assertEqual(self.ended, [[self.keycardId]])

    def test_revocation(self) -> None:
        self.successResultOf(self.server.bouncer.revokeKeycardIds([self.keycardId]))
        self.assertIn([self.keycardId], self.ended)

    def test_clientLeft(self) -> None:
        self.connection.disconnect()
        self.assertEqual(self.ended, [[self.keycardId]])

    def test_removed(self) -> None:
        self.server.bouncer.removeEndObserver(self.ended.append)
        self.server.clock.advance(100)
        self.assertEqual(self.ended, [])

    def test_failingObserver(self) -> None:
        """
        An observer that fails is logged; the others are still told.
        """

        def fails(ids: list[str]) -> None:
            raise RuntimeError("observer")

        later: list[list[str]] = []
        self.server.bouncer.addEndObserver(fails)
        self.server.bouncer.addEndObserver(later.append)
        self.server.clock.advance(100)
        self.assertEqual(later, [[self.keycardId]])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class KeysTests(SynchronousTestCase):
    def test_secretBoundToNames(self) -> None:
        secret = os.urandom(32)
        base = sessionSecret(secret, "t", "alice", "chat")
        self.assertEqual(base, sessionSecret(secret, "t", "alice", "chat"))
        for other in (
            ("u", "alice", "chat"),
            ("t", "bob", "chat"),
            ("t", "alice", "x"),
        ):
            self.assertNotEqual(base, sessionSecret(secret, *other))
        # Names are length-prefixed: moving a character between them shows.
        self.assertNotEqual(
            sessionSecret(secret, "t", "ab", "c"), sessionSecret(secret, "t", "a", "bc")
        )

    def test_keysDistinct(self) -> None:
        keys = SessionKeys.derive(os.urandom(32))
        values = [
            keys.serviceProof,
            keys.clientProof,
            keys.clientToService,
            keys.serviceToClient,
        ]
        self.assertEqual(len(set(values)), 4)
        self.assertNotIn(keys.clientProof.hex(), repr(keys))

    def test_proofAndConfirmationDiffer(self) -> None:
        keys = SessionKeys.derive(os.urandom(32))
        transcript = Transcript("t", "alice", "chat", b"c" * 32, b"s" * 32)
        proof = transcript.serviceProof(keys)
        self.assertNotEqual(proof, transcript.clientConfirmation(keys, proof))
        swapped = Transcript("t", "alice", "chat", b"s" * 32, b"c" * 32)
        self.assertNotEqual(proof, swapped.serviceProof(keys))


class GrantWireTests(SynchronousTestCase):
    def test_roundTrip(self) -> None:
        grant = SessionGrant("t" * 32, os.urandom(32), "alice", "chat", 12.5)
        self.assertEqual(SessionGrant.fromWire(grant.toWire()), grant)

    def test_refused(self) -> None:
        good = SessionGrant("t" * 32, os.urandom(32), "alice", "chat", 12.5).toWire()
        for change in (
            {"secret": b"short"},
            {"secret": "text"},
            {"ticket": ""},
            {"ticket": "t" * 65},
            {"client": 1},
            {"service": "x" * 257},
            {"expires": float("nan")},
            {"expires": True},
            {"extra": 1},
        ):
            with self.assertRaises(SessionRefused):
                SessionGrant.fromWire({**good, **change})
        with self.assertRaises(SessionRefused):
            SessionGrant.fromWire(["not", "a", "dict"])

    def test_limits(self) -> None:
        with self.assertRaises(ValueError):
            TicketLimits(timeout=0)
        with self.assertRaises(ValueError):
            TicketLimits(maxPending=True)
        with self.assertRaises(ValueError):
            TicketLimits(maxPendingPerAvatar=0)
        with self.assertRaises(ValueError):
            TicketLimits(maxPendingPerAvatar=2.5)  # type: ignore[arg-type]


class AuditTests(SynchronousTestCase):
    """
    The granter's decisions are audit events with stable names.
    """

    def test_events(self) -> None:
        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, events.append)  # type: ignore[arg-type]
        tests = GranterTests("test_confirm")
        tests.setUp()
        grant = tests.grant()
        tests.establish(grant)
        tests.refusedGrant("no such keycard")
        tests.successResultOf(tests.bouncer.expireKeycardIds([tests.alice]))
        tests.granter.stop()
        byName = {
            e["event"]: e
            for e in events
            if str(e.get("event", "")).startswith("session.")
        }
        self.assertEqual(
            sorted(byName),
            [
                "session.ended",
                "session.established",
                "session.granted",
                "session.refused",
            ],
        )
        self.assertEqual(byName["session.granted"]["clientName"], "alice")
        self.assertEqual(byName["session.granted"]["serviceName"], "chat")
        self.assertEqual(byName["session.established"]["sessionId"], grant.ticketId)
        self.assertIn("no keycard held", str(byName["session.refused"]["reason"]))
        self.assertEqual(byName["session.ended"]["sessionIds"], [grant.ticketId])
