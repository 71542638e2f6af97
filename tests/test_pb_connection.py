"""
Tests for the lifecycle of one client's connection to a L{KeycardRoot}
(L{twisted_keycard.pb._root.ClientConnection}): a realm that answers late, clients that
go or expire while their avatar is being produced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import attrs
from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, Logger, LogLevel
from twisted.spread import pb
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import Interface, implementer

from twisted_keycard import KeycardDenied, KeycardRefused
from twisted_keycard.keycard import Step
from twisted_keycard.pb._root import ClientConnection, ConnectionInputs
from twisted_keycard.pb._serverfactory import ConnectionGuard
from twisted_keycard.testing import KeycardTestConnection, KeycardTestServer

from ._passphrase import PassphraseAnswerer, PassphraseChecker
from ._realm import Perspective

_Login = tuple[type[Interface], object, Callable[[], None]]


class RealmFailed(Exception):
    """
    The late realm could not produce an avatar.
    """


@implementer(IRealm)
@attrs.define
class LateRealm:
    """
    A realm whose avatars arrive when the test fires C{requests}.
    """

    requests: list[tuple[str, Deferred[_Login]]] = attrs.field(factory=list)
    loggedOut: list[str] = attrs.field(factory=list)

    def requestAvatar(
        self, avatarId: Any, mind: object, *interfaces: Any
    ) -> Deferred[_Login]:
        d: Deferred[_Login] = Deferred()
        self.requests.append((avatarId, d))
        return d

    def answer(self) -> None:
        """
        Give the oldest request its avatar.
        """
        avatarId, d = self.requests.pop(0)
        logout = lambda: self.loggedOut.append(avatarId)  # noqa: E731
        d.callback((pb.IPerspective, Perspective(avatarId, None), logout))

    def fail(self) -> None:
        """
        Fail the oldest request.
        """
        _, d = self.requests.pop(0)
        d.errback(RealmFailed())


class LateAvatarTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.realm = LateRealm()
        self.server = KeycardTestServer.build(
            [PassphraseChecker({"alice": "wonderland"})], self.realm, duration=60.0
        )
        self.connection = self.server.connect()

    def startLogin(
        self, connection: KeycardTestConnection | None = None
    ) -> tuple[Deferred[pb.RemoteReference], str]:
        """
        Log in up to the realm's request, and return the client's pending
        login and the id of the keycard the bouncer issued.
        """
        connection = connection if connection is not None else self.connection
        d = connection.login([PassphraseAnswerer("alice", "wonderland")])
        self.assertNoResult(d)
        self.assertEqual(len(self.realm.requests), 1)
        [keycardId] = self.server.bouncer.held
        return d, keycardId

    def assertNothingHeld(self, keycardId: str) -> None:
        self.assertEqual(self.server.root.keycardIds(), [])
        self.assertEqual(self.server.bouncer.held, {})
        self.assertIsNone(
            self.successResultOf(self.server.bouncer.store.get(keycardId))
        )
        # A connection still open and not logged in keeps its login deadline.
        pending = [
            call
            for call in self.server.clock.getDelayedCalls()
            if getattr(cast(Any, call).func, "__func__", None)
            is not ConnectionGuard._loginTimedOut
        ]
        self.assertEqual(pending, [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_heldWhileAvatarProduced(self) -> None:
        """
        A keycard whose avatar is on its way counts as held, so that the
        bouncer keeps it alive; the client waits.
        """
        _, keycardId = self.startLogin()
        self.assertEqual(self.server.root.keycardIds(), [keycardId])

    def test_lateAvatar(self) -> None:
        """
        An avatar that arrives late, while the client is still there, logs
        it in as a prompt one would.
        """
        d, keycardId = self.startLogin()
        self.realm.answer()
        self.connection.flush()
        perspective = self.successResultOf(d)
        whoami = perspective.callRemote("whoami")
        self.connection.flush()
        self.assertEqual(self.successResultOf(whoami), "alice")
        self.assertEqual(self.server.root.keycardIds(), [keycardId])
        self.connection.disconnect()
        self.assertEqual(self.realm.loggedOut, ["alice"])
        self.assertNothingHeld(keycardId)

    def test_disconnectBeforeAvatar(self) -> None:
        """
        When the client goes while the realm is producing its avatar, the
        avatar is logged out as soon as it arrives, the keycard is removed
        from the bouncer, and nothing is held or logged as unhandled.
        """
        d, keycardId = self.startLogin()
        self.connection.disconnect()
        self.failureResultOf(d)
        self.realm.answer()
        self.connection.flush()
        self.assertEqual(self.realm.loggedOut, ["alice"])
        self.assertNothingHeld(keycardId)

    def test_disconnectThenRealmFails(self) -> None:
        """
        A realm that fails after the client has gone leaves nothing held,
        and no traceback in the log.
        """
        d, keycardId = self.startLogin()
        self.connection.disconnect()
        self.failureResultOf(d)
        self.realm.fail()
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(self.realm.loggedOut, [])
        self.assertNothingHeld(keycardId)

    def test_realmFails(self) -> None:
        """
        A realm that fails refuses the login with its own error, as it is
        (logged once, without a traceback), and removes the keycard; the
        client stays connected and may try again.
        """
        d, keycardId = self.startLogin()
        self.realm.fail()
        self.connection.flush()
        self.failureResultOf(d, RealmFailed)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertTrue(self.connection.connected)
        self.assertNothingHeld(keycardId)
        again, _ = self.startLogin()
        self.realm.answer()
        self.connection.flush()
        self.successResultOf(again)

    def test_expiryBeforeAvatar(self) -> None:
        """
        When the bouncer expires the keycard while the avatar is being
        produced, the client is dropped and the late avatar logged out.
        """
        d, keycardId = self.startLogin()
        self.server.clock.advance(60)
        self.connection.flush()
        self.assertFalse(self.connection.connected)
        self.failureResultOf(d)
        self.realm.answer()
        self.connection.flush()
        self.assertEqual(self.realm.loggedOut, ["alice"])
        self.assertNothingHeld(keycardId)

    def test_avatarBetweenExpiryAndDisconnect(self) -> None:
        """
        An avatar that arrives after the bouncer expired its keycard but
        before the connection is gone is logged out and refused.
        """
        d, keycardId = self.startLogin()
        self.successResultOf(self.server.bouncer.expireKeycardIds([keycardId]))
        self.realm.answer()
        self.assertEqual(self.realm.loggedOut, ["alice"])
        self.connection.flush()
        self.assertFalse(self.connection.connected)
        self.failureResultOf(d)
        self.assertEqual(self.realm.loggedOut, ["alice"])
        self.assertNothingHeld(keycardId)

    def test_expiryWhileAnotherLogsIn(self) -> None:
        """
        When a keycard the client holds expires while it logs in again, the
        client is dropped and both avatars are logged out once.
        """
        first, firstId = self.startLogin()
        self.realm.answer()
        self.connection.flush()
        self.successResultOf(first)
        second = self.connection.login([PassphraseAnswerer("alice", "wonderland")])
        self.assertEqual(len(self.realm.requests), 1)
        self.successResultOf(self.server.bouncer.expireKeycardIds([firstId]))
        self.connection.flush()
        self.assertFalse(self.connection.connected)
        self.failureResultOf(second)
        self.assertEqual(self.realm.loggedOut, ["alice"])
        self.realm.answer()
        self.assertEqual(self.realm.loggedOut, ["alice", "alice"])
        self.assertNothingHeld(firstId)

    def test_noLoginAfterExpiry(self) -> None:
        """
        A client being dropped for an expired keycard cannot start another
        exchange on the same connection: the bouncer never sees it.
        """
        first, keycardId = self.startLogin()
        self.realm.answer()
        self.connection.flush()
        self.successResultOf(first)
        self.successResultOf(self.server.bouncer.expireKeycardIds([keycardId]))
        keycard = PassphraseAnswerer("alice", "wonderland").start()
        d = self.server.root.login(
            self.connection.serverBroker,
            keycard.kind.encode(),
            0,
            None,
            keycard.message(Step.FIRST),
        )
        self.failureResultOf(d, KeycardRefused)
        self.assertEqual(len(self.server.bouncer._authentication.pending), 0)


class ConnectionMachineTests(SynchronousTestCase):
    """
    The machine of one connection, driven directly over a L{StringTransport}.
    """

    def setUp(self) -> None:
        self.server = KeycardTestServer.build([], LateRealm())
        self.removed: list[str] = []
        self.patch(self.server.bouncer, "removeKeycardId", self.remove)
        self.broker = pb.Broker(isClient=False)
        self.transport = StringTransport()
        self.broker.makeConnection(self.transport)
        self.holders: dict[str, ConnectionInputs] = {}
        self.log = Logger()
        self.connection = ClientConnection.new(
            self.broker, self.server.bouncer, self.holders, self.log
        )
        self.inputs = self.connection.inputs
        self.loggedOut: list[str] = []

    def remove(self, keycardId: str) -> Deferred[bool]:
        self.removed.append(keycardId)
        return succeed(True)

    def logout(self, keycardId: str) -> Callable[[], None]:
        return lambda: self.loggedOut.append(keycardId)

    def holdKeycard(self, keycardId: str) -> None:
        self.assertTrue(self.inputs.keycardIssued(keycardId))
        self.assertTrue(self.inputs.avatarReady(keycardId, self.logout(keycardId)))

    def test_holdAndLeave(self) -> None:
        """
        Keycards held are listed in the holders and counted; when the
        connection goes, each avatar is logged out and each keycard removed.
        """
        self.holdKeycard("k1")
        self.holdKeycard("k2")
        self.assertEqual(self.connection.core.keycardCount(), 2)
        self.assertEqual(self.holders, {"k1": self.inputs, "k2": self.inputs})
        self.inputs.connectionLost()
        self.assertEqual(self.loggedOut, ["k1", "k2"])
        self.assertEqual(self.removed, ["k1", "k2"])
        self.assertEqual(self.holders, {})
        self.assertTrue(self.connection.core.closing)

    def test_nothingHeldNothingRemoved(self) -> None:
        """
        A connection that held nothing (its exchanges never ended with a
        keycard) removes nothing when it goes, and is then closing.
        """
        self.assertFalse(self.connection.core.closing)
        self.inputs.connectionLost()
        self.assertEqual(self.removed, [])
        self.assertTrue(self.connection.core.closing)

    def test_expiredNotRemovedAgain(self) -> None:
        """
        Once expired, a keycard is dropped from the holders at once and is
        not removed from the bouncer again when the client goes, but its
        avatar is logged out then.
        """
        self.holdKeycard("k1")
        self.holdKeycard("k2")
        self.inputs.expire("k1")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(list(self.holders), ["k2"])
        self.assertTrue(self.connection.core.closing)
        self.inputs.connectionLost()
        self.assertEqual(self.loggedOut, ["k1", "k2"])
        self.assertEqual(self.removed, ["k2"])

    def test_connectionLostDuringExpiry(self) -> None:
        """
        A transport that reports the loss while it is being closed leaves
        the connection gone, with its avatars logged out.
        """
        self.holdKeycard("k1")
        self.patch(self.transport, "loseConnection", self.inputs.connectionLost)
        self.inputs.expire("k1")
        self.assertEqual(self.loggedOut, ["k1"])
        self.assertFalse(self.inputs.keycardIssued("k2"))
        self.assertEqual(self.removed, ["k2"])

    def test_failingLogout(self) -> None:
        """
        A logout that raises is logged, and its keycard is still removed.
        """
        self.assertTrue(self.inputs.keycardIssued("k1"))

        def logout() -> None:
            raise RealmFailed()

        self.assertTrue(self.inputs.avatarReady("k1", logout))
        self.inputs.connectionLost()
        self.assertEqual(len(self.flushLoggedErrors(RealmFailed)), 1)
        self.assertEqual(self.removed, ["k1"])

    def test_failingRemoval(self) -> None:
        """
        A bouncer that cannot be told of a removal gives a warning, not a
        logged error.
        """
        events: list[LogEvent] = []
        self.log.observer = events.append  # type: ignore[assignment]
        self.patch(
            self.server.bouncer,
            "removeKeycardId",
            lambda keycardId: fail(KeycardDenied("unreachable")),
        )
        self.holdKeycard("k1")
        self.inputs.connectionLost()
        self.assertEqual(self.flushLoggedErrors(), [])
        [warning] = [e for e in events if e["log_level"] is LogLevel.warn]
        self.assertEqual(warning["keycardId"], "k1")
