"""
Brokered sessions end to end, in memory: a client logged in to the bouncer
connects to a service through it, with the service using the bouncer in
its process and over PB.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.spread import pb
from twisted.test.iosim import IOPump
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_keycard.error import ServerAuthenticationFailed, SessionRefused
from twisted_keycard.pb import KeycardBroker
from twisted_keycard.sessions import (
    ISessionListener,
    ITicketRedeemer,
    Session,
    SessionBroker,
    SessionClientFactory,
    SessionGrant,
    TicketLimits,
    requestTicket,
)

from ._sessions import IDLE, SessionWorld

CHAT_PORT = 9000
FILES_PORT = 9001
IMPOSTOR_PORT = 9002


@implementer(ITicketRedeemer)
class ImpostorRedeemer:
    """
    A service that does not hold the session it claims: it "redeems" any
    ticket with a secret of its own.
    """

    def listen(self, listener: ISessionListener) -> None:
        pass

    def redeem(self, ticketId: str) -> Deferred[SessionGrant]:
        return succeed(SessionGrant(ticketId, os.urandom(32), "alice", "chat", 1e12))

    def confirm(
        self, ticketId: str, nonce: bytes, serviceNonce: bytes, confirmation: bytes
    ) -> Deferred[None]:
        return succeed(None)

    def ended(self, sessionIds: object) -> Deferred[None]:
        return succeed(None)


class SessionTestsMixin(SynchronousTestCase):
    __test__ = False
    remote = False

    def setUp(self) -> None:
        self.world = SessionWorld(self.remote)
        self.root = self.world.startService("chat", CHAT_PORT)
        self.realm = self.world.services["chat"][1]
        self.login = self.world.login("alice")

    # Helpers

    def establish(self) -> Session:
        session: Session = self.successResultOf(self.world.connect(self.login))
        return session

    def ticket(self, serviceName: str = "chat") -> SessionGrant:
        d = requestTicket(self.login, serviceName)
        self.world.settle()
        return self.successResultOf(d)

    def factory(self, port: int = CHAT_PORT) -> SessionClientFactory:
        factory = SessionClientFactory()
        TCP4ClientEndpoint(self.world.reactor, "127.0.0.1", port).connect(factory)
        self.world.settle()
        return factory

    def establishWith(
        self, grant: SessionGrant, port: int = CHAT_PORT
    ) -> Deferred[Session]:
        d = self.factory(port).establish(grant)
        self.world.settle()
        return d

    def call(self, session: Session, method: str, *args: object) -> Deferred[Any]:
        d: Deferred[Any] = session.perspective.callRemote(method, *args)
        self.world.settle()
        return d

    def pump(self, session: Session) -> IOPump:
        return self.world.pumpFor(session.broker)

    def assertEnded(self, session: Session) -> None:
        """
        The session is over everywhere: connection closed, avatar logged
        out, forgotten by the service and the bouncer.
        """
        self.successResultOf(session.whenEnded())
        self.assertTrue(self.pump(session).server.disconnected)
        self.assertEqual(self.root.sessionIds(), [])
        self.assertEqual(self.world.granter.table.sessionIds(), [])
        self.assertEqual(self.realm.loggedOut, ["alice"])

    def assertRefusedByService(self, session: Session) -> None:
        """
        The service, not the client, dropped the connection.
        """
        server = self.pump(session).server
        assert isinstance(server, SessionBroker)
        self.assertTrue(server._dropped)
        self.assertFalse(session.broker._dropped)
        self.assertEnded(session)

    # The happy path

    def test_interfaces(self) -> None:
        verifyObject(ISessionListener, self.root)
        verifyObject(ITicketRedeemer, self.root.redeemer)

    def test_established(self) -> None:
        """
        The client gets the service's avatar for the name the bouncer
        vouches for, each end knows the other's name as the bouncer gave
        it, both brokers are sealed, and the bouncer keeps only which
        session ends with which keycard: its ticket is gone.
        """
        session = self.establish()
        self.assertEqual(session.clientName, "alice")
        self.assertEqual(session.serviceName, "chat")
        self.assertEqual(self.successResultOf(self.call(session, "whoami")), "alice")
        self.assertEqual([a.avatarId for a in self.realm.avatars], ["alice"])
        server = self.pump(session).server
        assert isinstance(server, SessionBroker)
        self.assertTrue(session.broker.sealed)
        self.assertTrue(server.sealed)
        self.assertEqual(self.root.sessionIds(), [session.sessionId])
        self.assertEqual(self.world.granter.table.sessionIds(), [session.sessionId])
        self.assertEqual(len(self.world.granter.table), 0)

    def test_mind(self) -> None:
        """
        The client's mind reaches the service's realm over the sealed
        connection.
        """

        class Mind(pb.Referenceable):
            def remote_hello(self) -> str:
                return "hello from the client"

        d = self.factory().establish(self.ticket(), Mind())
        self.world.settle()
        self.successResultOf(d)
        mind = self.realm.avatars[0].mind
        assert isinstance(mind, pb.RemoteReference)
        answer = mind.callRemote("hello")
        self.world.settle()
        self.assertEqual(self.successResultOf(answer), "hello from the client")

    def test_largeMessage(self) -> None:
        """
        A message larger than one banana string is sealed in pieces.
        """
        session = self.establish()
        big = os.urandom(600 * 1024)
        self.assertEqual(self.successResultOf(self.call(session, "echo", big)), big)

    def test_endedByClient(self) -> None:
        session = self.establish()
        session.end()
        self.world.settle()
        self.assertEnded(session)

    # Tickets

    def test_ticketReplayed(self) -> None:
        """
        A ticket that established a session is refused when presented
        again.
        """
        grant = self.ticket()
        self.successResultOf(self.establishWith(grant))
        self.failureResultOf(self.establishWith(grant), SessionRefused)
        self.assertEqual(len(self.root.sessionIds()), 1)

    def test_redeemedTwice(self) -> None:
        """
        A ticket presented on a second connection while the first is
        using it is refused, and spent: the first cannot confirm either.
        """
        grant = self.ticket()
        first = self.factory()
        root = self.successResultOf(first.getRootObject())
        opened = root.callRemote("open", grant.ticketId, os.urandom(32))
        self.world.settle()
        self.successResultOf(opened)
        self.failureResultOf(self.establishWith(grant), SessionRefused)
        confirmed = root.callRemote("confirm", os.urandom(32), None)
        self.world.settle()
        self.failureResultOf(confirmed)
        self.assertEqual(self.root.sessionIds(), [])
        self.assertEqual(self.world.granter.table.sessionIds(), [])

    def test_redeemedByAnotherService(self) -> None:
        """
        A ticket for one service presented to another is refused, and
        spent.
        """
        self.world.startService("files", FILES_PORT)
        grant = self.ticket("chat")
        self.failureResultOf(self.establishWith(grant, FILES_PORT), SessionRefused)
        self.failureResultOf(self.establishWith(grant, CHAT_PORT), SessionRefused)
        self.successResultOf(self.establishWith(self.ticket("files"), FILES_PORT))

    def test_expired(self) -> None:
        grant = self.ticket()
        self.world.reactor.advance(TicketLimits().timeout)
        self.failureResultOf(self.establishWith(grant), SessionRefused)
        self.assertEqual(len(self.world.granter.table), 0)

    def test_unknownService(self) -> None:
        d = requestTicket(self.login, "nobody")
        self.world.settle()
        self.failureResultOf(d, SessionRefused)

    def test_anotherClientsKeycard(self) -> None:
        """
        A client cannot ask for a ticket under another client's keycard.
        """
        bob = self.world.login("bob")
        d = bob.perspective.callRemote("ticket", "chat", self.login.keycard.id)
        self.world.settle()
        self.failureResultOf(d).trap(SessionRefused)

    def test_clientCannotRedeem(self) -> None:
        grant = self.ticket()
        d = self.login.perspective.callRemote("redeem", grant.ticketId)
        self.world.settle()
        self.assertEqual(self.failureResultOf(d).getErrorMessage(), "session refused")

    def test_ticketRequestsBounded(self) -> None:
        """
        A client's tickets past its keycard's share push out its own
        oldest: the table never holds more of them.
        """
        limit = TicketLimits().maxPendingPerKeycard
        for _ in range(limit * 2):
            self.ticket()
        self.assertEqual(len(self.world.granter.table), limit)

    # Proofs

    def test_serviceCannotProve(self) -> None:
        """
        A service that does not hold the redeemed session cannot compute
        its proof: the client refuses it and closes the connection.
        """
        self.world.startService("impostor", IMPOSTOR_PORT, ImpostorRedeemer())
        factory = self.factory(IMPOSTOR_PORT)
        d = factory.establish(self.ticket())
        self.world.settle()
        self.failureResultOf(d, ServerAuthenticationFailed)
        impostor = self.world.services["impostor"][0]
        self.assertEqual(impostor.sessionIds(), [])
        self.assertEqual(self.world.services["impostor"][1].avatars, [])

    def test_wrongConfirmation(self) -> None:
        """
        A client that does not hold the session cannot confirm it: the
        connection is closed and the bouncer establishes nothing.
        """
        grant = self.ticket()
        factory = self.factory()
        root = self.successResultOf(factory.getRootObject())
        opened = root.callRemote("open", grant.ticketId, os.urandom(32))
        self.world.settle()
        self.successResultOf(opened)
        confirmed = root.callRemote("confirm", os.urandom(32), None)
        self.world.settle()
        self.failureResultOf(confirmed)
        self.assertTrue(root.broker.disconnected)
        self.assertEqual(self.realm.avatars, [])
        self.assertEqual(self.world.granter.table.sessionIds(), [])

    def test_authModeNotReentered(self) -> None:
        """
        Once sealed, calling C{open} again ends the session.
        """
        session = self.establish()
        factory = session.broker.factory
        assert isinstance(factory, SessionClientFactory)
        root = self.successResultOf(factory.getRootObject())
        d = root.callRemote("open", self.ticket().ticketId, os.urandom(32))
        self.world.settle()
        self.failureResultOf(d)
        self.assertEnded(session)

    # Sealed messages

    def tamperClient(
        self, session: Session, change: Callable[[bytes], bytes]
    ) -> Deferred[Any]:
        """
        Call C{whoami}, with C{change} applied to the bytes the client
        sends.
        """
        pump = self.pump(session)
        d: Deferred[Any] = session.perspective.callRemote("whoami")
        pump.clientIO.stream = [change(b"".join(pump.clientIO.stream))]
        self.world.settle()
        return d

    def test_tamperedByte(self) -> None:
        session = self.establish()
        d = self.tamperClient(session, lambda data: data[:-1] + bytes([data[-1] ^ 1]))
        self.failureResultOf(d)
        self.assertRefusedByService(session)

    def test_unsealedMessage(self) -> None:
        """
        A message without its seal, as an attacker on the path would
        inject, is refused.
        """
        session = self.establish()
        client = session.broker
        plain = session.perspective.callRemote("whoami")
        pump = self.pump(session)
        pump.clientIO.stream.clear()
        KeycardBroker.sendEncoded(
            client, [b"message", 99, 1, b"whoami", 1, [b"tuple"], [b"dictionary"]]
        )
        self.world.settle()
        self.failureResultOf(plain)
        self.assertRefusedByService(session)

    def test_replayed(self) -> None:
        session = self.establish()
        pump = self.pump(session)
        d = session.perspective.callRemote("whoami")
        recorded = b"".join(pump.clientIO.stream)
        self.world.settle()
        self.assertEqual(self.successResultOf(d), "alice")
        pump.clientIO.stream.append(recorded)
        self.world.settle()
        self.assertRefusedByService(session)

    def test_reordered(self) -> None:
        session = self.establish()
        pump = self.pump(session)
        first = session.perspective.callRemote("whoami")
        firstBytes = b"".join(pump.clientIO.stream)
        pump.clientIO.stream.clear()
        second = session.perspective.callRemote("echo", "second")
        pump.clientIO.stream.append(firstBytes)
        self.world.settle()
        self.failureResultOf(first)
        self.failureResultOf(second)
        self.assertRefusedByService(session)

    def test_tamperedByService(self) -> None:
        """
        The client checks the service's messages likewise: a tampered
        answer drops the connection, and the service ends the session.
        """
        session = self.establish()
        pump = self.pump(session)
        d = session.perspective.callRemote("whoami")
        pump.pump()  # the call reaches the service; its answer waits
        answer = b"".join(pump.serverIO.stream)
        self.assertTrue(answer)
        pump.serverIO.stream = [answer[:-1] + bytes([answer[-1] ^ 1])]
        self.world.settle()
        self.failureResultOf(d)
        self.assertTrue(session.broker._dropped)
        self.assertEnded(session)

    # Ends

    def test_idleReaped(self) -> None:
        """
        A session whose client sends nothing for the idle timeout is
        reaped; each message from the client postpones it.
        """
        session = self.establish()
        self.world.reactor.advance(IDLE * 0.75)
        self.successResultOf(self.call(session, "whoami"))
        self.world.reactor.advance(IDLE * 0.75)
        self.world.settle()
        self.assertEqual(self.root.sessionIds(), [session.sessionId])
        self.world.reactor.advance(IDLE * 0.25)
        self.world.settle()
        self.assertEnded(session)

    def test_revoked(self) -> None:
        """
        Revoking the client's keycard ends its sessions.
        """
        session = self.establish()
        keycardId = self.login.keycard.id
        assert keycardId is not None
        self.successResultOf(self.world.bouncer.revokeKeycardIds([keycardId]))
        self.world.settle()
        self.assertEnded(session)

    def test_expiredKeycard(self) -> None:
        session = self.establish()
        self.world.reactor.advance(3600)
        self.world.settle()
        self.assertEnded(session)

    def test_clientLeavesBouncer(self) -> None:
        """
        A session lasts no longer than its client holds its keycard: when
        the client leaves the bouncer, the session ends.
        """
        session = self.establish()
        self.login.perspective.broker.transport.loseConnection()
        self.world.settle()
        self.assertEnded(session)

    def test_otherSessionsUntouched(self) -> None:
        """
        Ending one client's sessions leaves another's.
        """
        session = self.establish()
        bob = self.world.login("bob")
        bobs = self.successResultOf(self.world.connect(bob))
        keycardId = self.login.keycard.id
        assert keycardId is not None
        self.successResultOf(self.world.bouncer.revokeKeycardIds([keycardId]))
        self.world.settle()
        self.successResultOf(session.whenEnded())
        self.assertEqual(self.root.sessionIds(), [bobs.sessionId])
        self.assertEqual(self.successResultOf(self.call(bobs, "whoami")), "bob")

    # Fair shares of the service's sessions

    def test_sessionsPerClient(self) -> None:
        """
        A client's session past C{maxSessionsPerClient} ends its own
        oldest, everywhere: the connection is closed, its avatar logged
        out, and the bouncer told.
        """
        root = self.world.startService(
            "files", FILES_PORT, maxSessions=10, maxSessionsPerClient=2
        )
        realm = self.world.services["files"][1]
        first, second, third = (
            self.successResultOf(self.world.connect(self.login, "files"))
            for _ in range(3)
        )
        self.world.settle()
        self.successResultOf(first.whenEnded())
        self.assertNoResult(second.whenEnded())
        self.assertEqual(root.sessionIds(), [second.sessionId, third.sessionId])
        self.assertEqual(realm.loggedOut, ["alice"])
        self.assertNotIn(first.sessionId, self.world.granter.table.sessionIds())
        self.assertEqual(self.successResultOf(self.call(third, "whoami")), "alice")

    def test_fullTableShared(self) -> None:
        """
        With every session of the service taken, a client's new session
        ends the oldest of the client holding the most, or its own oldest
        when it holds as many as any: one client filling the table never
        keeps another out, and never ends another's session while it
        holds more.
        """
        root = self.world.startService(
            "files", FILES_PORT, maxSessions=3, maxSessionsPerClient=3
        )
        alices = [
            self.successResultOf(self.world.connect(self.login, "files"))
            for _ in range(3)
        ]
        bob = self.world.login("bob")
        bobs = self.successResultOf(self.world.connect(bob, "files"))
        self.world.settle()
        self.successResultOf(alices[0].whenEnded())
        self.assertEqual(
            sorted(root.sessionIds()),
            sorted([alices[1].sessionId, alices[2].sessionId, bobs.sessionId]),
        )
        # Bob now holds the most: alice's next session ends his oldest.
        bobs2 = self.successResultOf(self.world.connect(bob, "files"))
        self.world.settle()
        self.successResultOf(alices[1].whenEnded())
        fourth = self.successResultOf(self.world.connect(self.login, "files"))
        self.world.settle()
        self.successResultOf(bobs.whenEnded())
        # Alice holds the most again: her next session ends her own oldest.
        fifth = self.successResultOf(self.world.connect(self.login, "files"))
        self.world.settle()
        self.successResultOf(alices[2].whenEnded())
        self.assertNoResult(bobs2.whenEnded())
        self.assertEqual(
            sorted(root.sessionIds()),
            sorted([bobs2.sessionId, fourth.sessionId, fifth.sessionId]),
        )
        self.assertEqual(self.successResultOf(self.call(bobs2, "whoami")), "bob")

    def test_badShares(self) -> None:
        """
        A cap on sessions that is not a positive integer is refused with
        its name, and no service starts.
        """
        cases: list[tuple[str, object]] = [
            ("maxSessions", 0),
            ("maxSessionsPerClient", -1),
            ("maxSessionsPerClient", True),
            ("maxSessions", 2.5),
        ]
        for name, value in cases:
            with self.assertRaises(ValueError) as raised:
                self.world.startService("files", FILES_PORT, **{name: value})  # type: ignore[arg-type]
            self.assertEqual(
                str(raised.exception),
                f"{name} must be a positive integer, not {value!r}",
            )
        self.assertNotIn("files", self.world.services)


class LocalSessionTests(SessionTestsMixin):
    __test__ = True
    remote = False


class RemoteSessionTests(SessionTestsMixin):
    __test__ = True
    remote = True

    def test_serviceLosesBouncer(self) -> None:
        """
        A service whose link to the bouncer drops could miss a revocation:
        it ends every session.
        """
        session = self.establish()
        link = self.world.links["chat"]
        perspective = link._perspective
        assert perspective is not None
        perspective.broker.transport.loseConnection()
        self.world.settle()
        self.assertEnded(session)

    def test_bouncerStops(self) -> None:
        """
        A bouncer whose granter stops tells its services to end every
        session.
        """
        session = self.establish()
        self.world.granter.stopService()
        self.world.settle()
        self.assertEnded(session)
