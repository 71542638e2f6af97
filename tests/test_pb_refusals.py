"""
Tests for what a stranger's bad messages get, over PB in memory: one log
line and no traceback on the server; on the wire only the error's class and
a fixed message, no frames, no paths, no failure counter.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import LogEvent, LogLevel, globalLogPublisher
from twisted.spread import pb
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import KeycardDenied, KeycardRefused, MalformedMessage
from twisted_keycard.bouncer._settings import Throttle
from twisted_keycard.pb._broker import REFUSED
from twisted_keycard.testing import KeycardTestServer

from ._passphrase import PassphraseAnswerer, PassphraseChecker, PassphraseKeycard
from ._realm import AvatarRealm

#: Bytes of a server's answer that would tell a stranger of its internals.
LEAKS = (b"_frames", b"count", b".py", b"site-packages", b"Traceback (most")


#: The kind of the test keycards, as a first message names it.
KIND = PassphraseKeycard.kind.encode()

#: A user name holding a lone surrogate (U+D800 as CESU-8 writes it), as a
#: hostile client can send it: bytes that are not UTF-8.
LONE_SURROGATE = b"al\xed\xa0\x80ice"


class RefusalTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = KeycardTestServer.build(
            [PassphraseChecker({"alice": "wonderland"})],
            AvatarRealm(),
            throttle=Throttle(perAccount=100, perAddress=3, window=60.0),
        )
        self.connection = self.server.connect()
        self.sent: list[bytes] = []
        transport: Any = self.connection.serverBroker.transport
        write = transport.write

        def recordingWrite(data: bytes) -> None:
            self.sent.append(data)
            write(data)

        transport.write = recordingWrite
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)  # type: ignore[arg-type]
        self.root: pb.RemoteReference = self.successResultOf(
            self.connection.factory.getRootObject()
        )

    def call(self, *args: Any, **kw: Any) -> Deferred[Any]:
        d: Deferred[Any] = self.root.callRemote(*args, **kw)
        self.connection.flush()
        return d

    def assertQuiet(self, lines: int = 1) -> None:
        """
        The server's PB layer logged C{lines} lines (the bouncer logs its
        decisions besides), no traceback, and sent nothing of its internals.
        """
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual([e for e in self.events if "log_failure" in e], [])
        self.assertEqual(
            [e for e in self.events if e["log_level"] >= LogLevel.error], []
        )
        refused = [
            e
            for e in self.events
            if e.get("log_namespace", "").startswith("twisted_keycard.pb")
        ]
        self.assertEqual(len(refused), lines)
        self.assertNoLeak()

    def assertNoLeak(self) -> None:
        wire = b"".join(self.sent)
        self.assertEqual([leak for leak in LEAKS if leak in wire], [])

    def assertRefused(self, d: Deferred[Any]) -> None:
        failure = self.failureResultOf(d, MalformedMessage)
        self.assertEqual(failure.getErrorMessage(), REFUSED)

    def test_unknownMethod(self) -> None:
        """
        A call to anything but the login methods is refused.
        """
        self.assertRefused(self.call("shutdown"))
        self.assertQuiet()
        self.assertIn("NoSuchMethod", str(self.events))

    def test_wrongArguments(self) -> None:
        """
        Wrong arguments to a login method are refused before the method
        runs, and the log does not repeat them.
        """
        self.assertRefused(self.call("login", "a", "b", "c" * 1000))
        self.assertRefused(self.call("keycardClasses", 1))
        self.assertRefused(self.call("login", KIND, 0, None, spy=1))
        self.assertQuiet(3)
        self.assertNotIn("c" * 200, str(self.events))

    def test_nameNotText(self) -> None:
        """
        A method name that is not UTF-8 is refused like any bad call.
        """
        broker: Any = self.connection.clientBroker
        d: Deferred[Any] = Deferred()
        broker.waitingForAnswers[99] = d
        args, kw = broker.serialize(()), broker.serialize({})
        broker.sendCall(b"message", 99, b"root", b"\xed\xa0\x80", 1, args, kw)
        self.connection.flush()
        self.assertRefused(d)
        self.assertQuiet()
        self.assertTrue(self.connection.connected)

    def test_refusalCarriesNothingElse(self) -> None:
        """
        A refused keycard reaches the client as L{KeycardRefused} and its
        fixed message; the bytes sent hold no frame, path or counter.
        """
        d = self.connection.login([PassphraseAnswerer("alice", "nope")])
        failure = self.failureResultOf(d, KeycardRefused)
        self.assertEqual(failure.getErrorMessage(), KeycardRefused.MESSAGE)
        self.assertQuiet(lines=0)

    def test_loneSurrogateCounted(self) -> None:
        """
        A user name with a lone surrogate is refused as an ordinary wrong
        answer, quietly, and counted: the address is throttled after three.
        """
        for _ in range(3):
            first = self.successResultOf(
                self.call("login", KIND, 0, None, LONE_SURROGATE)
            )
            tag, exchange = first[:2]
            self.assertEqual(tag, b"challenge")
            self.failureResultOf(
                self.call("answer", exchange, None, b"00" * 32), KeycardRefused
            )
        self.failureResultOf(
            self.call("login", KIND, 0, None, LONE_SURROGATE), KeycardDenied
        )
        self.assertQuiet(lines=0)

    def test_badCommandDrops(self) -> None:
        """
        A PB command that is not one (an answer to no question) drops the
        peer with one warning.
        """
        self.connection.clientBroker.sendCall(b"answer", 12345, b"x")
        self.connection.flush()
        self.assertFalse(self.connection.connected)
        self.assertEqual(self.flushLoggedErrors(), [])
        [warning] = [e for e in self.events if e["log_level"] == LogLevel.warn]
        self.assertIn("bad PB command", warning["log_format"])

    def test_afterLoginNotQuiet(self) -> None:
        """
        Once logged in, the peer's calls are the application's: PB's own
        handling, with failures still sent bare.
        """
        perspective = self.successResultOf(
            self.connection.login([PassphraseAnswerer("alice", "wonderland")])
        )
        d = perspective.callRemote("nosuch")
        self.connection.flush()
        self.failureResultOf(d)
        self.flushLoggedErrors()
        self.assertNoLeak()
