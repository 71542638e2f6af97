"""
Tests for L{twisted_keycard._printable}: peer-supplied names reach log
lines and C{keycard list} escaped, and C{keycard user add} refuses names
SCRAM would refuse.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import KeycardDenied, KeycardRefused, KeycardState
from twisted_keycard._printable import LIMIT, printable
from twisted_keycard.admin._operations import checkName
from twisted_keycard.bouncer._settings import Throttle
from twisted_keycard.hmackeys import HMACAnswerer, HMACKeys
from twisted_keycard.scram import SCRAMAnswerer
from twisted_keycard.store import IssuedKeycard
from twisted_keycard.store.sqlite._store import SQLiteStore
from twisted_keycard.testing import KeycardTestServer

from ._procs import keycard
from ._realm import AvatarRealm

#: A name holding a carriage return, an ANSI colour, an OSC title, a NUL, a
#: C1 control sequence introducer and a right-to-left override.
HOSTILE = "mal\r\x1b[31m\x1b]0;owned\x07\x00\x9b2J\u202eyrolam"
ESCAPED = "mal\\r\\x1b[31m\\x1b]0;owned\\x07\\x00\\x9b2J\\u202eyrolam"
KEY = b"k" * 32


def unsafe(text: str) -> list[str]:
    """
    The characters of C{text} a terminal or a log reader could act on.
    """
    return [c for c in text if not c.isprintable()]


class PrintableTests(SynchronousTestCase):
    def test_escapes(self) -> None:
        self.assertEqual(printable(HOSTILE), ESCAPED)
        for text, shown in [
            ("line\nbreak\ttab", "line\\nbreak\\ttab"),
            ("back\\slash", "back\\\\slash"),
            ("\u2066isolate\u2069 \u200bzero", "\\u2066isolate\\u2069 \\u200bzero"),
            ("para\u2029sep\u2028", "para\\u2029sep\\u2028"),
            ("\U000e0041tag", "\\U000e0041tag"),
            ("\ud800", "\\ud800"),
            ("no\u00a0break", "no\\xa0break"),
        ]:
            self.assertEqual(printable(text), shown)

    def test_keepsPrintable(self) -> None:
        for text in ["alice", "Zoë Ångström", "日本語", "a b,c=d:e", "שלום"]:
            self.assertEqual(printable(text), text)

    def test_bounded(self) -> None:
        shown = printable("\x1b" * 1000)
        self.assertEqual(shown, "\\x1b" * LIMIT + f"...[+{1000 - LIMIT}]")
        self.assertEqual(printable("abcdef", limit=3), "abc...[+3]")

    def test_notText(self) -> None:
        self.assertEqual(printable(None), "-")
        self.assertEqual(printable(ValueError("bad\r\nname")), "bad\\r\\nname")
        self.assertEqual(printable(12), "12")


class HostileNamesInLogsTests(SynchronousTestCase):
    """
    A hostile name through a real login ends up escaped in the text of
    every log event.
    """

    def setUp(self) -> None:
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)  # type: ignore[arg-type]

    def texts(self) -> list[str]:
        return [formatEvent(e) for e in self.events if "log_format" in e]

    def test_issued(self) -> None:
        server = KeycardTestServer.build([HMACKeys({HOSTILE: KEY})], AvatarRealm())
        login = self.successResultOf(
            server.connect().loginWithKeycard([HMACAnswerer(HOSTILE, KEY)])
        )
        self.assertIs(login.keycard.state, KeycardState.AUTHENTICATED)
        self.assertEqual(login.keycard.avatarId, HOSTILE)
        issued = [t for t in self.texts() if "issued to" in t]
        self.assertEqual(len(issued), 1, self.texts())
        self.assertIn(f"issued to {ESCAPED} via", issued[0])
        for text in self.texts():
            self.assertEqual(unsafe(text), [], text)

    def test_throttled(self) -> None:
        """
        The throttle's line names the account a client claimed, escaped.
        """
        server = KeycardTestServer.build(
            [HMACKeys({"alice": KEY})],
            AvatarRealm(),
            throttle=Throttle(perAccount=1, perAddress=100),
        )
        for expected in (KeycardRefused, KeycardDenied):
            self.failureResultOf(
                server.connect().login([HMACAnswerer(HOSTILE, KEY)]), expected
            )
        throttled = [t for t in self.texts() if "throttled" in t]
        self.assertEqual(len(throttled), 1, self.texts())
        self.assertIn(f"for {ESCAPED} from", throttled[0])
        for text in self.texts():
            self.assertEqual(unsafe(text), [], text)


class UserNameTests(SynchronousTestCase):
    def test_refusedLikeSCRAM(self) -> None:
        """
        C{keycard user add} takes only names SCRAM carries unchanged.
        """
        for name in [
            "al\u202eice",
            "a\x1bb",
            "a\x9bb",
            "ﬁle",
            "soft\u00adhyphen",
            "zero\u200bwidth",
            "x" * 300,
            "a:b",
            " alice",
        ]:
            self.assertRaises(ValueError, checkName, name)
        for name in ["alice", "Zoë", "a,b=c", "日本語"]:
            self.assertEqual(checkName(name), name)
        self.assertRaises(ValueError, SCRAMAnswerer, "al\u202eice", "p")


@pytest.mark.integration
class CommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.data = Path(self.mktemp()).resolve() / "data"
        result = keycard("init", str(self.data))
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_listEscaped(self) -> None:
        """
        C{keycard list} shows a hostile avatar and requester name escaped.
        """
        store = SQLiteStore(str(self.data / "keycard.db"), threaded=False)
        now = time.time()
        record = IssuedKeycard(
            "id1", HOSTILE, "req\x1b[2J", "bouncer", "hmac", None, now, 60, now + 60
        )
        self.successResultOf(store.add(record))
        self.successResultOf(store.close())
        listing = keycard("list", "--data-dir", str(self.data))
        self.assertEqual(listing.returncode, 0, listing.stderr)
        self.assertIn(ESCAPED, listing.stdout)
        self.assertIn("req\\x1b[2J", listing.stdout)
        self.assertEqual(unsafe(listing.stdout.replace("\n", "")), [])

    def test_userAddRefused(self) -> None:
        result = keycard(
            "user", "add", "--data-dir", str(self.data), "al\u202eice", stdin="pw\n"
        )
        self.assertEqual(result.returncode, 2)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
        self.assertIn("bidi", result.stderr)
        self.assertEqual(result.stdout, "")
