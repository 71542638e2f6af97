"""
Tests for L{twisted_keycard._files} and for every writer of secrets
that uses it: data directory, SQLite store, users file, development
certificate, rewritten password files.  Each runs under umask 022 (what
twistd keeps) and 000 (the widest).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
from pathlib import Path

from twisted.cred.credentials import UsernamePassword
from twisted.internet.defer import maybeDeferred
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard._files import (
    createPrivateFile,
    exposure,
    makePrivateDirectory,
    writePrivateFile,
)
from twisted_keycard._hashpool import HashPool
from twisted_keycard.admin import _operations as admin
from twisted_keycard.admin._operations import addUser
from twisted_keycard.passwords import PasswordFile
from twisted_keycard.store import Revocation
from twisted_keycard.store.sqlite._store import SQLiteStore

DATA = Path(__file__).resolve().parent / "data"
UMASKS = (0o022, 0o000)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


class UmaskMixin(SynchronousTestCase):
    def umask(self, value: int) -> None:
        """
        Set the process umask for the rest of this test.
        """
        old = os.umask(value)
        self.addCleanup(os.umask, old)

    def directory(self) -> Path:
        path = Path(self.mktemp()).resolve()
        path.mkdir(parents=True)
        return path


class WritePrivateFileTests(UmaskMixin):
    def test_newFile(self) -> None:
        for umask in UMASKS:
            self.umask(umask)
            path = self.directory() / "secret"
            writePrivateFile(path, b"s3cret")
            self.assertEqual(path.read_bytes(), b"s3cret")
            self.assertEqual(mode(path), 0o600)

    def test_replacesWideFile(self) -> None:
        """
        A 0666 file planted at the target is replaced by a 0600 one.
        """
        self.umask(0o000)
        path = self.directory() / "secret"
        path.write_text("planted")
        path.chmod(0o666)
        writePrivateFile(path, b"s3cret")
        self.assertEqual(path.read_bytes(), b"s3cret")
        self.assertEqual(mode(path), 0o600)

    def test_replacesSymlink(self) -> None:
        """
        A symbolic link planted at the target is replaced by a file; the
        file it pointed to is untouched.
        """
        directory = self.directory()
        victim = directory / "victim"
        victim.write_text("victim's data")
        path = directory / "secret"
        path.symlink_to(victim)
        writePrivateFile(path, b"s3cret")
        self.assertFalse(path.is_symlink())
        self.assertEqual(path.read_bytes(), b"s3cret")
        self.assertEqual(victim.read_text(), "victim's data")

    def test_noTemporaryLeft(self) -> None:
        directory = self.directory()
        writePrivateFile(directory / "secret", b"one")
        writePrivateFile(directory / "secret", b"two")
        self.assertEqual([p.name for p in directory.iterdir()], ["secret"])

    def test_failureLeavesTarget(self) -> None:
        """
        When the new content cannot be renamed into place, the old file
        stays and the temporary file is removed.
        """
        directory = self.directory()
        target = directory / "secret"
        target.mkdir()
        self.assertRaises(OSError, writePrivateFile, target, b"s3cret")
        self.assertEqual([p.name for p in directory.iterdir()], ["secret"])


class PrivatePathTests(UmaskMixin):
    def test_directory(self) -> None:
        for umask in UMASKS:
            self.umask(umask)
            path = self.directory() / "a" / "b"
            makePrivateDirectory(path)
            self.assertEqual(mode(path), 0o700)

    def test_existingDirectoryNarrowed(self) -> None:
        path = self.directory()
        path.chmod(0o755)
        makePrivateDirectory(path)
        self.assertEqual(mode(path), 0o700)

    def test_createFile(self) -> None:
        for umask in UMASKS:
            self.umask(umask)
            path = self.directory() / "f"
            self.assertTrue(createPrivateFile(path))
            self.assertEqual(mode(path), 0o600)
            path.chmod(0o640)
            self.assertFalse(createPrivateFile(path))
            self.assertEqual(mode(path), 0o640)

    def test_exposure(self) -> None:
        directory = self.directory()
        path = directory / "f"
        self.assertIsNone(exposure(path))
        path.write_text("")
        path.chmod(0o600)
        self.assertIsNone(exposure(path))
        path.chmod(0o640)
        self.assertEqual(exposure(path), f"file {path} has mode 0640")
        path.chmod(0o602)
        self.assertIsNotNone(exposure(path))
        directory.chmod(0o750)
        self.assertEqual(exposure(directory), f"directory {directory} has mode 0750")


class WritersTests(UmaskMixin):
    """
    Everything the project writes that holds a secret is private, whatever
    the umask.
    """

    def test_adminInit(self) -> None:
        """
        C{admin.init()} called from Python (no CLI umask): the data
        directory, store, users file and development key are private.
        """
        for umask in UMASKS:
            self.umask(umask)
            data = self.directory() / "data"
            with contextlib.redirect_stdout(io.StringIO()):
                admin.init(str(data), "localhost")
            self.assertEqual(mode(data), 0o700)
            self.assertEqual(mode(data / "keycard.db"), 0o600)
            self.assertEqual(mode(data / "users.scram"), 0o600)
            self.assertEqual(mode(data / "tls"), 0o700)
            self.assertEqual(mode(data / "tls" / "server.pem"), 0o600)

    def test_sqliteStoreFiles(self) -> None:
        """
        A new store, its C{-wal}, its C{-shm} and its revocation journal are
        0600 while in use.
        """
        for umask in UMASKS:
            self.umask(umask)
            path = self.directory() / "keycard.db"
            store = SQLiteStore(str(path), threaded=False)
            self.addCleanup(store.close)
            self.successResultOf(store.revoke([Revocation("k", 10.0, 1.0, "test")]))
            files = sorted(path.parent.iterdir())
            self.assertEqual(
                [p.name for p in files],
                [
                    "keycard.db",
                    "keycard.db-shm",
                    "keycard.db-wal",
                    "keycard.revocations",
                ],
            )
            for p in files:
                self.assertEqual(mode(p), 0o600, p)

    def test_usersFile(self) -> None:
        """
        The users file is rewritten 0600, and a link planted at the old
        fixed temporary name is not followed.
        """
        for umask in UMASKS:
            self.umask(umask)
            directory = self.directory()
            path = directory / "users.scram"
            path.write_text("")
            path.chmod(0o644)
            victim = directory / "victim"
            victim.write_text("victim's data")
            (directory / "users.scram.tmp").symlink_to(victim)
            addUser(path, "alice", "password", iterations=4096)
            self.assertEqual(mode(path), 0o600)
            self.assertEqual(victim.read_text(), "victim's data")

    def test_rehashedPasswordFile(self) -> None:
        """
        A password file rewritten with a stronger hash is 0600, and a link
        planted at the old fixed temporary name is not followed.
        """
        directory = self.directory()
        path = directory / "htpasswd"
        shutil.copy(DATA / "htpasswd.txt", path)
        victim = directory / "victim"
        victim.write_text("victim's data")
        (directory / "htpasswd.tmp").symlink_to(victim)
        checker = PasswordFile(
            path,
            owned=True,
            runInThread=maybeDeferred,
            hashPool=HashPool(threads=1, queued=0, runner=maybeDeferred),
        )
        credentials = UsernamePassword(b"apr1", b"apr1-pw")
        self.successResultOf(checker.requestAvatarId(credentials))
        self.assertIn("$argon2id$", path.read_text())
        self.assertEqual(mode(path), 0o600)
        self.assertEqual(victim.read_text(), "victim's data")
