"""
Tests for the mock secret (issue 12, item 4): made by C{keycard init} in the
store, read by the bouncer service and handed to the checkers it built, so
that bouncers sharing a store (and one bouncer after a restart) show one
mock challenge for a name; and for the helpers that make mock material
(L{twisted_keycard._mocks}).
"""

from __future__ import annotations

import contextlib
import io
import sqlite3
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_keycard._mocks import WithMocks, mockBytes, mockSubkey, mostCommon
from twisted_keycard.admin import _operations as admin
from twisted_keycard.interfaces import IMockSecretTaker
from twisted_keycard.scram import SCRAMExchange, SCRAMKeycard, SCRAMVerifiers, Verifier
from twisted_keycard.service._startup import StoreCheck
from twisted_keycard.service._tap import Options, makeService
from twisted_keycard.srp import SRPVerifiers
from twisted_keycard.store import MemoryStore


class HelperTests(SynchronousTestCase):
    def test_mockBytes(self) -> None:
        """
        Mock bytes are stable for a key and name, any length, and differ
        between names and keys.
        """
        key = mockSubkey(b"s" * 32, b"test")
        self.assertEqual(mockBytes(key, "ghost", 48), mockBytes(key, "ghost", 48))
        self.assertEqual(len(mockBytes(key, "ghost", 48)), 48)
        self.assertEqual(mockBytes(key, "ghost", 48)[:16], mockBytes(key, "ghost", 16))
        self.assertNotEqual(mockBytes(key, "ghost", 16), mockBytes(key, "ghosts", 16))
        other = mockSubkey(b"s" * 32, b"other")
        self.assertNotEqual(mockBytes(key, "ghost", 16), mockBytes(other, "ghost", 16))
        self.assertEqual(len(mockBytes(key, "\udcff", 16)), 16)

    def test_shortSecretRefused(self) -> None:
        self.assertRaises(ValueError, mockSubkey, b"s" * 15, b"test")

    def test_mostCommon(self) -> None:
        self.assertEqual(mostCommon([1, 2, 2, 3], 0), 2)
        self.assertEqual(mostCommon([3, 1, 1, 3], 0), 3)
        self.assertEqual(mostCommon([], 7), 7)

    def test_lookUpWithoutException(self) -> None:
        """
        Entries with mocks look a name up with their mapping's C{get}: a
        KeyError raised and caught for unknown names only would make them
        slower.
        """

        class GetOnly(dict[str, int]):
            def __getitem__(self, name: str) -> int:
                raise AssertionError("looked up by indexing")

        entries = WithMocks(GetOnly(alice=1), None)
        self.assertEqual(entries.get("alice"), 1)
        self.assertIsNone(entries.get("mallory"))

    def test_takers(self) -> None:
        for checker in [SCRAMVerifiers({}), SRPVerifiers({})]:
            self.assertTrue(verifyObject(IMockSecretTaker, checker))

    def test_memoryStore(self) -> None:
        store = MemoryStore()
        secret = self.successResultOf(store.mockSecret())
        self.assertEqual(self.successResultOf(store.mockSecret()), secret)
        self.assertNotEqual(self.successResultOf(MemoryStore().mockSecret()), secret)


def init(directory: Path) -> None:
    """
    Run C{keycard init}, quietly.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        admin.init(str(directory), None)


class ServiceTests(SynchronousTestCase):
    """
    The bouncer service hands its store's mock secret to the checkers of
    C{--auth} (and to the default one).
    """

    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.data = self.dir / "data"
        init(self.data)
        users = self.dir / "users.scram"
        # Most verifiers with 10,000 iterations: so are mock exchanges.
        users.write_text(
            "".join(
                f"{name}:{Verifier.fromPassword('x', n).toString()}\n"
                for name, n in [("alice", 10_000), ("bob", 10_000), ("carol", 4096)]
            )
        )
        users.chmod(0o600)
        self.users = users

    def checker(self, *args: str) -> SCRAMVerifiers:
        """
        Make the service (as twistd does), start what runs before any
        listener (the store's check, which hands out the mock secret), and
        return its SCRAM checker.
        """
        options = Options()
        options.parseOptions(list(args))
        service: Any = makeService(options)
        [check] = [s for s in service if isinstance(s, StoreCheck)]
        check.startService()
        [checker] = options["credCheckers"]
        assert isinstance(checker, SCRAMVerifiers)
        return checker

    def mock(self, checker: SCRAMVerifiers, name: str = "ghost") -> tuple[bytes, int]:
        keycard = SCRAMKeycard(clientFirst=f"n,,n={name},r=abc")
        exchange = self.successResultOf(checker.prime(keycard))
        assert isinstance(exchange, SCRAMExchange)
        self.assertFalse(exchange.known)
        return exchange.serverFirst.salt, exchange.serverFirst.iterations

    def test_initMakesTheSecret(self) -> None:
        """
        C{keycard init} stores the mock secret beside the keyring.
        """
        connection = sqlite3.connect(self.data / "keycard.db")
        self.addCleanup(connection.close)
        rows = connection.execute("SELECT name, secret FROM secrets").fetchall()
        self.assertEqual([(name, len(secret)) for name, secret in rows], [("mock", 32)])

    def test_bouncersShareMockChallenges(self) -> None:
        """
        Two bouncers of one data directory, or of one store with data
        directories of their own, show the same salt and the file's most
        common iteration count for an unknown name; a bouncer of another
        store shows another salt.
        """
        auth = ["--auth", f"scram:{self.users}"]
        one = self.checker("--data-dir", str(self.data), *auth)
        restarted = self.checker("--data-dir", str(self.data), *auth)
        otherData = self.dir / "other"
        init(otherData)
        store = f"sqlite:{self.data / 'keycard.db'}"
        sharing = self.checker("--data-dir", str(otherData), "--store", store, *auth)
        alone = self.checker("--data-dir", str(otherData), *auth)
        self.assertEqual(self.mock(one), self.mock(restarted))
        self.assertEqual(self.mock(one), self.mock(sharing))
        self.assertEqual(self.mock(one)[1], 10_000)
        self.assertNotEqual(self.mock(one)[0], self.mock(alone)[0])
        self.assertNotEqual(self.mock(one), self.mock(one, "trudy"))

    def test_defaultChecker(self) -> None:
        """
        The data directory's own users file gets the secret too.
        """
        first = self.checker("--data-dir", str(self.data))
        second = self.checker("--data-dir", str(self.data))
        self.assertEqual(self.mock(first), self.mock(second))
