"""
A store made by the previous release (store format 4), opened by this one:
C{tests/data/format4/keycard.db} was written by that release's own
C{keycard} command and C{twistd keycard-bouncer} (see the README beside it).
Opening it upgrades it to this release's format in one transaction, and
what it held still holds: its keycards, its revocations, its keyring (the
tokens it signed), its mock secret and its failed logins.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import Bouncer, KeycardRefused
from twisted_keycard.bouncer import TokenPolicy
from twisted_keycard.store import FAILED, IssuedKeycard, ThrottleEvent
from twisted_keycard.store.sqlite import _database
from twisted_keycard.store.sqlite._database import VERSION
from twisted_keycard.store.sqlite._store import SQLiteStore
from twisted_keycard.tokens import TokenKeycard, verify

from ._passphrase import PassphraseAnswerer, PassphraseChecker, PassphraseKeycard
from .test_sqlite import INDEXES, keycardIndexes

FIXTURE = Path(__file__).resolve().parent / "data" / "format4"
#: The listing C{keycard list --json} printed of the fixture, by that release.
LISTED: list[dict[str, Any]] = json.loads((FIXTURE / "list.json").read_text())
#: The requester the fixture's tokens were issued through (the service's).
REQUESTER = "keycard-bouncer"
#: Keycard ids by the token file of their password login.
IDS = {
    "alice.token": LISTED[0]["id"],
    "bob.token": LISTED[1]["id"],
    "carol.token": LISTED[2]["id"],
    "alice2.token": LISTED[3]["id"],
}
#: The keys of the fixture's keyring: the first (retiring, with a grace of
#: about 9.5 years) signed alice, bob and carol's tokens, the second alice2's.
KIDS = ["c71ae0c2", "81dea9ea"]


def posix(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def token(name: str) -> str:
    return (FIXTURE / name).read_text().strip()


def copyFixture(test: SynchronousTestCase) -> str:
    """
    A copy of the fixture's store, as an operator's file: mode 0600.
    """
    directory = Path(test.mktemp())
    directory.mkdir()
    path = directory / "keycard.db"
    shutil.copyfile(FIXTURE / "keycard.db", path)
    path.chmod(0o600)
    return str(path)


def userVersion(path: str) -> int:
    connection = sqlite3.connect(path)
    try:
        return int(connection.execute("PRAGMA user_version").fetchone()[0])
    finally:
        connection.close()


class Format4FixtureTests(SynchronousTestCase):
    """
    The fixture is what the previous release made: format 4, its failed
    logins in the table of that format.
    """

    def test_isFormat4(self) -> None:
        connection = sqlite3.connect(f"file:{FIXTURE / 'keycard.db'}?mode=ro", uri=True)
        self.addCleanup(connection.close)
        self.assertEqual(connection.execute("PRAGMA user_version").fetchone(), (4,))
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
        self.assertIn("failures", tables)
        self.assertNotIn("throttle_log", tables)
        self.assertEqual(len(keycardIndexes(connection)), 7)
        self.assertEqual(
            connection.execute("SELECT COUNT(*) FROM keycards").fetchone(), (4,)
        )


class Format4OpenedTests(SynchronousTestCase):
    """
    The current store opens the previous release's file, upgrading it.
    """

    def setUp(self) -> None:
        self.path = copyFixture(self)
        self.store = SQLiteStore(self.path, threaded=False)
        self.addCleanup(self.store.close)

    def test_upgraded(self) -> None:
        """
        Opened, the file is of this release's format, with its indexes.
        """
        self.successResultOf(self.store.count())
        self.assertEqual(userVersion(self.path), VERSION)
        connection = sqlite3.connect(self.path)
        self.addCleanup(connection.close)
        self.assertEqual(keycardIndexes(connection), INDEXES)

    def test_keycardsKept(self) -> None:
        """
        Every keycard on record is read back as the previous release
        listed it.
        """
        records: list[IssuedKeycard] = []
        for avatar in ("alice", "bob", "carol"):
            found = self.successResultOf(self.store.byAvatar(avatar))
            records.extend(found)
        byId = {r.keycardId: r for r in records}
        self.assertEqual(sorted(byId), sorted(r["id"] for r in LISTED))
        for listed in LISTED:
            record = byId[listed["id"]]
            self.assertEqual(
                (
                    record.avatarId,
                    record.requesterName,
                    record.bouncerName,
                    record.keycardType,
                    record.address,
                    record.held,
                    record.parentId,
                    record.seatPool,
                    # A password login starts its own family.
                    record.familyId,
                ),
                (
                    listed["avatar"],
                    listed["requester"],
                    listed["bouncer"],
                    listed["kind"],
                    listed["address"],
                    listed["held"],
                    listed["parent"],
                    listed["seatPool"],
                    listed["id"],
                ),
            )
            # Listed to the second.
            self.assertLess(abs(record.issued - posix(listed["issued"])), 1)
            self.assertLess(abs(record.expires - posix(listed["expires"])), 1)

    def test_revocationsKept(self) -> None:
        """
        Bob's keycard and its family, revoked by the previous release's
        C{keycard revoke}, are still revoked; the others are not.
        """
        bob = IDS["bob.token"]
        self.assertTrue(self.successResultOf(self.store.isRevoked(bob)))
        self.assertTrue(self.successResultOf(self.store.isRevoked(f"family:{bob}")))
        for name in ("alice.token", "carol.token", "alice2.token"):
            self.assertFalse(self.successResultOf(self.store.isRevoked(IDS[name])))
        revocations, cursor = self.successResultOf(self.store.revokedSince(0, 10))
        self.assertEqual(
            [(r.keycardId, r.reason) for r in revocations],
            [(bob, "fixture: revoked"), (f"family:{bob}", "fixture: revoked")],
        )
        self.assertEqual(cursor, 2)

    def test_keyringKept(self) -> None:
        """
        Both signing keys, the first retiring, and the keyring's version.
        """
        keyring = self.successResultOf(self.store.loadKeyring())
        assert keyring is not None
        self.assertEqual([k.kid for k in keyring.keys], KIDS)
        self.assertEqual(keyring.signing.kid, KIDS[1])
        self.assertIsNotNone(keyring.keys[0].notAfter)
        self.assertEqual(self.successResultOf(self.store.keyringVersion()), 2)
        issued = posix(LISTED[0]["issued"])
        for name, kid in [("alice.token", KIDS[0]), ("alice2.token", KIDS[1])]:
            self.assertEqual(verify(token(name), keyring, issued + 60).kid, kid)

    def test_mockSecretKept(self) -> None:
        """
        The mock secret the previous release made (unknown users' mock
        challenges follow from it) is the one read.
        """
        connection = sqlite3.connect(f"file:{FIXTURE / 'keycard.db'}?mode=ro", uri=True)
        self.addCleanup(connection.close)
        (old,) = connection.execute("SELECT secret FROM secrets").fetchone()
        self.assertEqual(self.successResultOf(self.store.mockSecret()), old)

    def test_failedLoginsKept(self) -> None:
        """
        The failed logins of the previous release's table are failed events
        of the throttle log, oldest first, and that table is gone.
        """
        connection = sqlite3.connect(f"file:{FIXTURE / 'keycard.db'}?mode=ro", uri=True)
        self.addCleanup(connection.close)
        old = connection.execute("SELECT key, at FROM failures ORDER BY at").fetchall()
        self.assertEqual(
            sorted({key for key, _ in old}),
            ["account:carol", "account:nobody", "address:127.0.0.1"],
        )
        shared = self.successResultOf(self.store.shareThrottle("b", [], 0, 10))
        self.assertEqual(
            sorted(shared.events, key=lambda e: (e.at, e.key)),
            sorted(
                (ThrottleEvent(key, at, FAILED) for key, at in old),
                key=lambda e: (e.at, e.key),
            ),
        )
        tables = self.successResultOf(
            self.store._db.run(
                lambda c: {r[0] for r in c.execute("SELECT name FROM sqlite_master")}
            )
        )
        self.assertNotIn("failures", tables)
        self.assertNotIn("reservations", tables)

    def test_openedAgain(self) -> None:
        """
        Opening the upgraded file again changes nothing.
        """
        self.successResultOf(self.store.count())
        self.successResultOf(self.store.close())
        again = SQLiteStore(self.path, threaded=False)
        self.addCleanup(again.close)
        self.assertEqual(self.successResultOf(again.count()), len(LISTED))
        self.assertTrue(self.successResultOf(again.isRevoked(IDS["bob.token"])))
        shared = self.successResultOf(again.shareThrottle("b", [], 0, 10))
        self.assertEqual(len(shared.events), 4)
        self.assertEqual(userVersion(self.path), VERSION)


class Format4UpgradeAtomicTests(SynchronousTestCase):
    """
    The upgrade is one transaction: if it fails, the file is left as the
    previous release made it, and the next opening upgrades it.
    """

    def test_failureLeavesFormat4(self) -> None:
        path = copyFixture(self)
        original = _database._moveThrottleCounts

        def broken(connection: sqlite3.Connection) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        self.patch(_database, "_moveThrottleCounts", broken)
        store = SQLiteStore(path, threaded=False)
        self.failureResultOf(store.count(), sqlite3.OperationalError)
        self.successResultOf(store.close())
        self.assertEqual(userVersion(path), 4)
        connection = sqlite3.connect(path)
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
        self.assertEqual(len(keycardIndexes(connection)), 7)
        connection.close()
        self.assertIn("failures", tables)
        self.assertNotIn("throttle_log", tables)
        self.assertNotIn("keycards_seats", tables)

        self.patch(_database, "_moveThrottleCounts", original)
        store = SQLiteStore(path, threaded=False)
        self.addCleanup(store.close)
        self.assertEqual(self.successResultOf(store.count()), len(LISTED))
        self.assertEqual(userVersion(path), VERSION)


class Format4TokensTests(SynchronousTestCase):
    """
    A bouncer of this release on the upgraded file takes the tokens the
    previous release signed, refuses the one it revoked, and issues new
    keycards signed with the newest key.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        # A minute after the fixture's last login: within every token's
        # family lifetime (the default day).
        self.clock.advance(posix(LISTED[-1]["issued"]) + 60)
        self.store = SQLiteStore(copyFixture(self), threaded=False)
        self.addCleanup(self.store.close)
        self.bouncer = Bouncer(
            [PassphraseChecker({"alice": "pw"})],
            self.store,
            clock=self.clock,
            tokens=TokenPolicy(),
        )
        self.bouncer.startService()
        self.addCleanup(self.bouncer.stopService)
        self.successResultOf(self.bouncer.started)

    def present(self, name: str) -> Any:
        return self.bouncer.authenticate(
            TokenKeycard(
                presented=token(name), address="127.0.0.1", requesterName=REQUESTER
            )
        )

    def test_tokensTaken(self) -> None:
        """
        The tokens of keycards not revoked log in, signed by either key,
        and the new keycard is in their family.
        """
        for name, avatar in [
            ("alice.token", "alice"),
            ("alice2.token", "alice"),
            ("carol.token", "carol"),
        ]:
            keycard = self.successResultOf(self.present(name))
            self.assertEqual(keycard.avatarId, avatar)
            assert keycard.id is not None
            record = self.successResultOf(self.store.get(keycard.id))
            assert record is not None
            self.assertEqual(record.familyId, IDS[name])
            self.assertEqual(record.parentId, IDS[name])

    def test_revokedRefused(self) -> None:
        """
        Bob's token, revoked by the previous release, is refused.
        """
        self.failureResultOf(self.present("bob.token"), KeycardRefused)

    def test_newLogin(self) -> None:
        """
        A password login is recorded in the upgraded store, with a token
        signed by the keyring's newest key.
        """
        first = PassphraseKeycard(
            username="alice", address="192.0.2.1", requesterName=REQUESTER
        )
        challenged = self.successResultOf(self.bouncer.authenticate(first))
        answered = PassphraseAnswerer("alice", "pw").answer(challenged)
        keycard = self.successResultOf(self.bouncer.authenticate(answered))
        assert keycard.token is not None and keycard.id is not None
        keyring = self.successResultOf(self.store.loadKeyring())
        assert keyring is not None
        self.assertEqual(
            verify(keycard.token, keyring, self.clock.seconds()).kid, KIDS[1]
        )
        self.assertEqual(self.successResultOf(self.store.count()), len(LISTED) + 1)


def leaseUntil(path: str, expires: float) -> None:
    """
    Set the fixture's bouncer lease to end at C{expires}, as a bouncer of the
    previous release renewing it would.
    """
    connection = sqlite3.connect(path)
    try:
        connection.execute("UPDATE leases SET expires = ?", (expires,))
        connection.commit()
    finally:
        connection.close()


class Format4LeasedTests(SynchronousTestCase):
    """
    A bouncer of the previous release still running on the store (its lease
    not lapsed) would fail every login once the store is upgraded under it:
    the upgrade is refused, in one line, until its lease lapses.
    """

    def test_refusedWhileLeased(self) -> None:
        path = copyFixture(self)
        leaseUntil(path, time.time() + 3600)
        store = SQLiteStore(path, threaded=False)
        failure = self.failureResultOf(store.count(), ValueError)
        message = failure.getErrorMessage()
        self.assertIn(f"{path} has store format 4", message)
        self.assertIn("holds a lease on it for", message)
        self.assertIn("stop every bouncer on this store", message)
        self.assertNotIn("\n", message)
        self.successResultOf(store.close())
        # Nothing was changed.
        self.assertEqual(userVersion(path), 4)
        connection = sqlite3.connect(path)
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
        connection.close()
        self.assertIn("failures", tables)

    def test_upgradedOnceLapsed(self) -> None:
        path = copyFixture(self)
        leaseUntil(path, time.time() - 1)
        store = SQLiteStore(path, threaded=False)
        self.addCleanup(store.close)
        self.assertEqual(self.successResultOf(store.count()), len(LISTED))
        self.assertEqual(userVersion(path), VERSION)
