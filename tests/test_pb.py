"""
Tests for logging in with keycards over PB, in memory
(L{twisted_keycard.testing}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import LogEvent, globalLogPublisher
from twisted.spread import pb
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import (
    InvalidKeycard,
    KeycardDenied,
    KeycardRefused,
    KeycardState,
    MalformedMessage,
)
from twisted_keycard.error import ProtocolError
from twisted_keycard.pb._root import NOT_READY, _KeycardLogin
from twisted_keycard.scram import SCRAMAnswerer, SCRAMVerifiers
from twisted_keycard.testing import KeycardTestConnection, KeycardTestServer

from ._passphrase import PassphraseAnswerer, PassphraseChecker, PassphraseKeycard
from ._realm import AvatarRealm

#: The kind of the test keycards, as a first message names it.
KIND = PassphraseKeycard.kind.encode()


class PBLoginTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.realm = AvatarRealm()
        self.server = KeycardTestServer.build(
            [PassphraseChecker({"alice": "wonderland"})],
            self.realm,
            duration=60.0,
            # Renewed while connected, a keycard still ends after a minute.
            maxLifetime=60.0,
        )
        self.connection = self.server.connect()
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)  # type: ignore[arg-type]

    def call(self, connection: KeycardTestConnection, d: Deferred[object]) -> object:
        connection.flush()
        return self.successResultOf(d)

    def test_login(self) -> None:
        """
        The client gets a perspective of the avatar the checker named, and
        the keycard with its id and expiry.
        """
        answerer = PassphraseAnswerer("alice", "wonderland")
        login = self.successResultOf(self.connection.loginWithKeycard([answerer]))
        self.assertEqual(
            self.call(self.connection, login.perspective.callRemote("whoami")), "alice"
        )
        self.assertIs(login.keycard.state, KeycardState.AUTHENTICATED)
        self.assertEqual(login.keycard.avatarId, "alice")
        self.assertEqual(login.keycard.requesterName, "test-requester")
        self.assertEqual(login.keycard.expires, self.server.clock.seconds() + 60.0)
        self.assertTrue(answerer.finished)
        self.assertEqual(self.server.root.keycardIds(), [login.keycard.id])

    def test_addressFromTransport(self) -> None:
        """
        The keycard's address is the connection's peer, whatever the client
        put in it.
        """
        connection = self.server.connect(clientHost="192.0.2.7")

        class Spoofing(PassphraseAnswerer):
            def start(self) -> PassphraseKeycard:
                keycard = super().start()
                keycard.address = "127.0.0.1"
                return keycard

        answerer = Spoofing("alice", "wonderland")
        login = self.successResultOf(connection.loginWithKeycard([answerer]))
        assert login.keycard.id is not None
        held = self.server.bouncer.held[login.keycard.id]
        self.assertEqual(held.address, "192.0.2.7")

    def test_wrongSecret(self) -> None:
        """
        A refusal reaches the client as L{KeycardRefused} with the opaque
        message, and the server logs one line and no traceback.
        """
        d = self.connection.login([PassphraseAnswerer("alice", "nope")])
        failure = self.failureResultOf(d, KeycardRefused)
        self.assertEqual(failure.getErrorMessage(), KeycardRefused.MESSAGE)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual([e for e in self.events if "log_failure" in e], [])

    def test_triesInOrder(self) -> None:
        """
        The client tries each kind in turn until one is accepted.
        """
        d = self.connection.login(
            [
                PassphraseAnswerer("alice", "nope"),
                PassphraseAnswerer("alice", "wonderland"),
            ]
        )
        perspective = self.successResultOf(d)
        self.assertEqual(
            self.call(self.connection, perspective.callRemote("whoami")), "alice"
        )

    def recordCalls(self) -> list[str]:
        """
        Record the names of the methods clients call on the root object.
        """
        seen: list[str] = []
        original = _KeycardLogin.remoteMessageReceived

        def recording(
            this: _KeycardLogin, broker: pb.Broker, message: str, *args: Any
        ) -> object:
            seen.append(message)
            return original(this, broker, message, *args)

        self.patch(_KeycardLogin, "remoteMessageReceived", recording)
        return seen

    def test_twoRoundTrips(self) -> None:
        """
        A two-message exchange costs two calls, C{login} and C{answer}: the
        client does not ask the server's kinds first.
        """
        seen = self.recordCalls()
        d = self.connection.login([PassphraseAnswerer("alice", "wonderland")])
        self.successResultOf(d)
        self.assertEqual(seen, ["login", "answer"])

    def test_kindsAnswer(self) -> None:
        """
        A first message of a kind the server does not take is answered
        with the kinds it takes, not refused: the client goes on with the
        next kind it has that the server listed, on the same connection,
        and the bouncer never sees the first.
        """
        seen = self.recordCalls()
        answerers = [
            SCRAMAnswerer("alice", "wonderland"),
            PassphraseAnswerer("alice", "wonderland"),
        ]
        self.successResultOf(self.connection.login(answerers))
        self.assertEqual(seen, ["login", "login", "answer"])
        self.assertEqual(
            [e.get("event") for e in self.events if e.get("event")], ["login.issued"]
        )

    def test_kindsOnce(self) -> None:
        """
        The client takes the server's kinds once: a server that answers
        every first message with them ends the login with a
        L{ProtocolError}, after two calls.
        """
        seen = self.recordCalls()
        self.patch(self.server.root, "_kindClass", lambda kind: None)
        d = self.connection.login([PassphraseAnswerer("alice", "wonderland")])
        self.assertIn("again", self.failureResultOf(d, ProtocolError).getErrorMessage())
        self.assertEqual(seen, ["login", "login"])

    def test_malformedKinds(self) -> None:
        """
        Kinds that are not a list of strings are a L{ProtocolError}.
        """
        self.patch(self.server.root, "_kindClass", lambda kind: None)
        self.patch(self.server.root, "kindsFor", lambda broker: [1, 2])
        d = self.connection.login([PassphraseAnswerer("alice", "wonderland")])
        self.failureResultOf(d, ProtocolError)

    def test_askServer(self) -> None:
        """
        Asking first (one call more), the client skips kinds the server
        does not take.
        """
        seen = self.recordCalls()
        answerers = [
            SCRAMAnswerer("alice", "wonderland"),
            PassphraseAnswerer("alice", "wonderland"),
        ]
        d = self.connection.login(answerers, askServer=True)
        self.successResultOf(d)
        self.assertEqual(seen, ["keycardClasses", "login", "answer"])

    def test_serverTakesNone(self) -> None:
        """
        Asked or not, a client whose kinds the server does not take is
        refused with a message that says so.
        """
        server = KeycardTestServer.build([SCRAMVerifiers({})], self.realm)
        for askServer in (False, True):
            d = server.connect().login(
                [PassphraseAnswerer("alice", "wonderland")], askServer=askServer
            )
            self.assertIn(
                "none of these",
                self.failureResultOf(d, KeycardRefused).getErrorMessage(),
            )

    def test_bouncerTakesNoKindYet(self) -> None:
        """
        A bouncer that takes no kind at all yet (a remote bouncer not
        reached) has the client told to try again later.
        """
        server = KeycardTestServer.build([], self.realm)
        for askServer in (False, True):
            d = server.connect().login(
                [PassphraseAnswerer("alice", "wonderland")], askServer=askServer
            )
            failure = self.failureResultOf(d, KeycardDenied)
            self.assertEqual(failure.getErrorMessage(), NOT_READY)

    def test_disconnectRemovesKeycard(self) -> None:
        """
        When the client goes, the requester removes its keycard from the
        bouncer and the realm's logout runs.
        """
        login = self.successResultOf(
            self.connection.loginWithKeycard(
                [PassphraseAnswerer("alice", "wonderland")]
            )
        )
        assert login.keycard.id is not None
        self.connection.disconnect()
        self.assertIsNone(
            self.successResultOf(self.server.bouncer.store.get(login.keycard.id))
        )
        self.assertEqual(self.realm.loggedOut, ["alice"])
        self.assertEqual(self.server.root.keycardIds(), [])
        self.assertEqual(self.server.clock.getDelayedCalls(), [])

    def test_expiryDropsClient(self) -> None:
        """
        When the keycard's lifetime ends the server drops the client.
        """
        self.successResultOf(
            self.connection.login([PassphraseAnswerer("alice", "wonderland")])
        )
        self.server.clock.advance(30)
        other = self.server.connect()
        self.successResultOf(other.login([PassphraseAnswerer("alice", "wonderland")]))
        self.server.clock.advance(30)
        self.connection.flush()
        other.flush()
        self.assertFalse(self.connection.connected)
        self.assertTrue(other.connected)
        self.assertEqual(self.realm.loggedOut, ["alice"])

    def test_revocationDropsClient(self) -> None:
        login = self.successResultOf(
            self.connection.loginWithKeycard(
                [PassphraseAnswerer("alice", "wonderland")]
            )
        )
        assert login.keycard.id is not None
        self.successResultOf(self.server.bouncer.expireKeycardIds([login.keycard.id]))
        self.connection.flush()
        self.assertFalse(self.connection.connected)

    def sendRaw(self, *args: object, method: str = "login") -> Deferred[object]:
        d: Deferred[object] = self.connection.factory.getRootObject()
        self.connection.flush()
        root = self.successResultOf(d)
        assert isinstance(root, pb.RemoteReference)
        result: Deferred[object] = root.callRemote(method, *args)
        self.connection.flush()
        return result

    def test_extraValue(self) -> None:
        """
        A first message with more values than its kind's first step has
        fields is refused before the bouncer sees it, with no traceback in
        the server's log.
        """
        failure = self.failureResultOf(
            self.sendRaw(KIND, 0, None, b"alice", b"r", b"isAdmin")
        )
        self.assertTrue(failure.check(InvalidKeycard))
        self.assertIn("at most 2 values", failure.getErrorMessage())
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(len(self.server.bouncer._authentication.pending), 0)

    def test_oversizedField(self) -> None:
        failure = self.failureResultOf(self.sendRaw(KIND, 0, None, b"a" * 65))
        self.assertTrue(failure.check(InvalidKeycard))
        self.assertIn("longer than 64", failure.getErrorMessage())

    def test_wrongType(self) -> None:
        failure = self.failureResultOf(self.sendRaw(KIND, 0, None, 7))
        self.assertTrue(failure.check(InvalidKeycard))

    def test_notAKind(self) -> None:
        """
        A kind that is not a byte string, or flags that are not an integer,
        are refused quietly.
        """
        for args in [(7, 0, None), (KIND, "0", None), (KIND, 0)]:
            failure = self.failureResultOf(self.sendRaw(*args))
            self.assertTrue(failure.check(MalformedMessage))
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_answerToNoExchange(self) -> None:
        """
        An answer to an exchange number the connection was not given is
        refused.
        """
        failure = self.failureResultOf(self.sendRaw(7, b"x", method="answer"))
        self.assertTrue(failure.check(KeycardRefused))

    def test_protocolOne(self) -> None:
        """
        A client of keycard protocol 1 (C{login(keycard, mind)}) is told in
        so many words to upgrade.
        """
        failure = self.failureResultOf(
            self.sendRaw(PassphraseKeycard(username="alice"), None)
        )
        self.assertTrue(failure.check(KeycardRefused))
        self.assertIn("keycard protocol 2", failure.getErrorMessage())

    def test_unregisteredClass(self) -> None:
        """
        An object of a class PB may not receive is refused quietly.
        """
        failure = self.failureResultOf(self.sendRaw(KIND, 0, pb.Copyable()))
        self.assertTrue(failure.check(MalformedMessage))
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_tooManyKeycardsPerConnection(self) -> None:
        self.server.root.maxKeycardsPerConnection = 2
        for _ in range(2):
            self.successResultOf(
                self.connection.login([PassphraseAnswerer("alice", "wonderland")])
            )
        d = self.connection.login([PassphraseAnswerer("alice", "wonderland")])
        self.failureResultOf(d, KeycardDenied)

    def test_garbageDropsQuietly(self) -> None:
        """
        A peer that sends bytes that are not banana is dropped with one
        warning, and no traceback is logged.
        """
        self.successResultOf(self.connection.factory.getRootObject())
        self.connection.serverBroker.dataReceived(b"\x01\xff")
        self.connection.flush()
        self.assertFalse(self.connection.connected)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_oversizedMessage(self) -> None:
        """
        A peer whose one message grows past the broker's bound is dropped.
        """
        self.connection.serverBroker.maxMessage = 4096  # type: ignore[attr-defined]
        d = self.sendRaw(["x" * 1000] * 10)
        self.connection.flush()
        self.assertFalse(self.connection.connected)
        self.failureResultOf(d)
