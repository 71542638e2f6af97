"""
Tests for L{twisted_keycard.passwords}: password files written by the real
tools (tests/data, made by tests/data/make-password-files.sh with Debian's
apache2-utils htpasswd, mkpasswd, openssl passwd and argon2).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from passlib.hash import apr_md5_crypt, bcrypt, sha512_crypt
from twisted.cred import strcred
from twisted.cred.credentials import UsernamePassword
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from twisted_keycard import (
    InsecureTransport,
    KeycardDenied,
    KeycardRefused,
    KeycardState,
    MemoryStore,
    ProtocolError,
)
from twisted_keycard._hashpool import BUSY, HashPool, IHashPool
from twisted_keycard.bouncer import Throttle
from twisted_keycard.passwords import (
    PasswordAnswerer,
    PasswordExchange,
    PasswordFile,
    PasswordKeycard,
    PasswordTooLong,
    hashShape,
    parseHashes,
    rewriteHash,
)
from twisted_keycard.testing import KeycardTestServer

from ._realm import AvatarRealm
from ._threads import QueuedThread, inline

DATA = Path(__file__).resolve().parent / "data"


@implementer(IHashPool)
class Recording:
    """
    A hash pool (and a thread) that runs calls at once, as L{inline} does,
    and keeps the hash each password was checked against.
    """

    def __init__(self) -> None:
        self.hashes: list[str] = []

    def __call__(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return inline(f, *args)

    def run(self, key: object, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        self.hashes.append(args[1])
        return inline(f, *args)


HTPASSWD = ["bcrypt", "apr1", "sha1", "crypt", "sha256", "sha512"]
SHADOW = ["mk512", "mk256", "ossl6", "ossl5", "osslapr1", "argon"]


def inlinePool() -> HashPool:
    """
    A hash pool that hashes in this thread: tests have no reactor running.
    """
    return HashPool(threads=1, queued=0, runner=maybeDeferred)


class PasswordFileTests(SynchronousTestCase):
    def checker(self, name: str, **kwargs: Any) -> PasswordFile:
        return PasswordFile(DATA / name, hashPool=inlinePool(), **kwargs)

    def check(self, checker: PasswordFile, user: str, password: str) -> Deferred[Any]:
        return checker.requestAvatarId(
            UsernamePassword(user.encode(), password.encode())
        )

    def test_htpasswdFormats(self) -> None:
        """
        Every format Apache's htpasswd writes: the right password passes,
        a wrong one fails.
        """
        checker = self.checker("htpasswd.txt")
        for user in HTPASSWD:
            self.assertEqual(
                self.successResultOf(self.check(checker, user, f"{user}-pw")), user
            )
            self.failureResultOf(self.check(checker, user, "wrong"), KeycardRefused)

    def test_shadowAndArgon2(self) -> None:
        checker = self.checker("shadow-like.txt")
        for user in SHADOW:
            self.assertEqual(
                self.successResultOf(self.check(checker, user, f"{user}-pw")), user
            )
            self.failureResultOf(
                self.check(checker, user, f"{user}-PW"), KeycardRefused
            )

    def test_unknownUser(self) -> None:
        failure = self.failureResultOf(
            self.check(self.checker("htpasswd.txt"), "nobody", "x"), KeycardRefused
        )
        self.assertEqual(failure.getErrorMessage(), KeycardRefused.MESSAGE)

    def test_bcryptOver72Bytes(self) -> None:
        """
        htpasswd truncated the 100-byte password to 72 bytes when hashing;
        we refuse it rather than truncate.  The refusal is a wrong
        password's, after a bcrypt check against the user's own hash (issue
        12, item 5: it was another error, at once).
        """
        checked = Recording()
        checker = PasswordFile(
            DATA / "htpasswd.txt", runInThread=checked, hashPool=checked
        )
        hashes = parseHashes((DATA / "htpasswd.txt").read_text()).strict()
        for user, password in [("long", "x" * 100), ("bcrypt", "y" * 73)]:
            failure = self.failureResultOf(
                self.check(checker, user, password), KeycardRefused
            )
            self.assertEqual(failure.getErrorMessage(), KeycardRefused.MESSAGE)
            self.assertEqual(checked.hashes[-1], hashes[user])

    def test_unknownUserCostsWhatAUserCosts(self) -> None:
        """
        An unknown user's password is checked against a hash in the scheme
        and with the cost most of the file's hashes have (not any user's
        hash), made again when the file changes (issue 12, item 5: it was
        always argon2).
        """
        apr1 = apr_md5_crypt.hash("a")
        bcrypt5 = bcrypt.using(rounds=5, ident="2y").hash("b")
        sha512 = sha512_crypt.using(rounds=5000, salt_size=8).hash("c")
        path = Path(self.mktemp())
        checked = Recording()
        for lines, expected in [
            ([apr1, apr1, bcrypt5], apr1),
            ([bcrypt5, bcrypt5, sha512, "*"], bcrypt5),
            ([sha512, "!", "!", apr1], sha512),
        ]:
            path.write_text("".join(f"u{i}:{h}\n" for i, h in enumerate(lines)))
            checker = PasswordFile(
                path, runInThread=checked, clock=Clock(), hashPool=checked
            )
            self.failureResultOf(self.check(checker, "nobody", "x"), KeycardRefused)
            dummy = checked.hashes[-1]
            context = checker._context
            self.assertEqual(
                hashShape(context, dummy), hashShape(context, expected), dummy
            )
            self.assertNotIn(dummy, lines)
        path.write_text(f"u0:{apr1}\n# changed\n")
        self.failureResultOf(self.check(checker, "nobody", "x"), KeycardRefused)
        self.assertEqual(
            hashShape(context, checked.hashes[-1]), hashShape(context, apr1)
        )

    def test_sameStepsForEveryName(self) -> None:
        """
        A known user, an unknown one and a locked account have their hash's
        scheme looked up as many times: the check takes no extra step for a
        name that exists.
        """
        path = Path(self.mktemp())
        path.write_text(f"alice:{apr_md5_crypt.hash('a')}\nroot:*\n")
        checker = PasswordFile(
            path, runInThread=inline, clock=Clock(), hashPool=inlinePool()
        )
        looked: list[str] = []
        identify = checker._context.identify

        def counted(hashed: str, *args: Any, **kwargs: Any) -> Any:
            looked.append(hashed)
            return identify(hashed, *args, **kwargs)

        self.patch(checker._context, "identify", counted)
        counts = []
        for user in ["alice", "nobody", "root"]:
            looked.clear()
            self.failureResultOf(self.check(checker, user, "x"), KeycardRefused)
            counts.append(len(looked))
        self.assertEqual(counts, [counts[0]] * 3)

    def test_emptyFileDummy(self) -> None:
        """
        With no usable hash in the file, unknown users cost a hash of the
        default scheme (argon2).
        """
        path = Path(self.mktemp())
        path.write_text("root:*\n")
        checked = Recording()
        checker = PasswordFile(path, runInThread=checked, hashPool=checked)
        self.failureResultOf(self.check(checker, "root", "x"), KeycardRefused)
        self.assertTrue(checked.hashes[-1].startswith("$argon2id$"))

    def test_lengthCapBeforeHashing(self) -> None:
        """
        A password over the cap (256 bytes of UTF-8 by default) is refused
        before any hashing, for known and unknown users alike; one at the
        cap is checked.
        """
        hashed: list[object] = []

        def counting(call: Any) -> Deferred[Any]:
            hashed.append(call)
            return maybeDeferred(call)

        pool = HashPool(threads=1, queued=0, runner=counting)
        checker = PasswordFile(DATA / "htpasswd.txt", hashPool=pool)
        for user in ["sha512", "nobody"]:
            self.failureResultOf(self.check(checker, user, "x" * 257), PasswordTooLong)
            self.failureResultOf(
                self.check(checker, user, "\u00e9" * 129), PasswordTooLong
            )
        self.assertEqual(hashed, [])
        self.failureResultOf(self.check(checker, "sha512", "x" * 256), KeycardRefused)
        self.assertEqual(len(hashed), 1)
        small = PasswordFile(
            DATA / "htpasswd.txt", hashPool=inlinePool(), maxPasswordBytes=8
        )
        self.failureResultOf(self.check(small, "sha512", "sha512-pw"), PasswordTooLong)

    def test_passwordNotText(self) -> None:
        """
        A password with a lone surrogate is refused as a protocol error,
        before any hashing.
        """
        checker = self.checker("htpasswd.txt")
        d = checker.requestAvatarId(PasswordExchange("sha512", "a\ud800b"))
        self.failureResultOf(d, ProtocolError)

    def test_poolKeyIsAddressGroup(self) -> None:
        """
        The hash pool shares its places by the client's address group.
        """
        keys: list[object] = []

        @implementer(IHashPool)
        class Recording:
            def run(self, key: object, f: Any, *args: Any) -> Deferred[Any]:
                keys.append(key)
                return maybeDeferred(f, *args)

        checker = PasswordFile(DATA / "htpasswd.txt", hashPool=Recording())
        for address in ["192.0.2.1", "2001:db8::1", None]:
            exchange = PasswordExchange("sha512", "wrong", address)
            self.failureResultOf(checker.requestAvatarId(exchange), KeycardRefused)
        self.assertEqual(keys, ["192.0.2.1", "2001:db8::/64", None])

    def test_poolFullDenied(self) -> None:
        """
        When the hash pool is full, a password login is denied at once, and
        not counted as a failure.
        """
        pool = HashPool(threads=1, queued=0, runner=lambda call: Deferred())
        checker = PasswordFile(DATA / "htpasswd.txt", hashPool=pool)
        store = MemoryStore()
        server = KeycardTestServer.build(
            [checker], AvatarRealm(), store=store, throttle=Throttle()
        )

        def login(address: str) -> Deferred[Any]:
            keycard = PasswordKeycard(username="sha512", password="x", address=address)
            return server.bouncer.authenticate(keycard)

        # Held, as a real pool holds its work: a login nobody references
        # would be collected (its exchange dropped) at any allocation.
        first = login("10.0.0.1")
        self.assertNoResult(first)
        failure = self.failureResultOf(login("10.0.0.2"), KeycardDenied)
        self.assertEqual(failure.getErrorMessage(), BUSY)
        throttler = server.bouncer.throttler
        assert throttler is not None
        self.assertEqual(throttler.count("address:10.0.0.2"), 0)
        # The first login, in progress.
        self.assertEqual(throttler.count("account:sha512"), 1)
        self.assertNoResult(first)

    def test_rehashWhenOwned(self) -> None:
        path = Path(self.mktemp())
        shutil.copy(DATA / "htpasswd.txt", path)
        checker = PasswordFile(
            path, owned=True, hashPool=inlinePool(), runInThread=inline
        )
        self.successResultOf(self.check(checker, "apr1", "apr1-pw"))
        hashes = parseHashes(path.read_text()).strict()
        self.assertTrue(hashes["apr1"].startswith("$argon2id$"), hashes["apr1"])
        self.assertEqual(
            hashes["sha1"],
            parseHashes((DATA / "htpasswd.txt").read_text()).strict()["sha1"],
        )
        again = PasswordFile(path, hashPool=inlinePool())
        self.successResultOf(self.check(again, "apr1", "apr1-pw"))

    def test_rehashOffReactorThread(self) -> None:
        """
        The rehashed file is written in the thread, atomically (a new file,
        mode 0600, renamed over the old one), not on the reactor thread.
        """
        path = Path(self.mktemp())
        shutil.copy(DATA / "htpasswd.txt", path)
        before = path.read_text()
        thread = QueuedThread()
        checker = PasswordFile(
            path,
            owned=True,
            runInThread=thread,
            clock=Clock(),
            hashPool=inlinePool(),
        )
        login = self.check(checker, "apr1", "apr1-pw")
        self.assertEqual(self.successResultOf(login), "apr1")
        self.assertEqual(thread.calls, [rewriteHash])
        self.assertEqual(path.read_text(), before)
        inode = os.stat(path).st_ino
        thread.runAll()
        self.assertNotEqual(os.stat(path).st_ino, inode)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        self.assertTrue(
            parseHashes(path.read_text()).strict()["apr1"].startswith("$argon2id$")
        )

    def test_rehashKeepsNewerHash(self) -> None:
        """
        A hash the administrator changed while the old one was being checked
        is not overwritten by the rehash of the old one.
        """
        path = Path(self.mktemp())
        shutil.copy(DATA / "htpasswd.txt", path)
        thread = QueuedThread()
        checker = PasswordFile(
            path,
            owned=True,
            runInThread=thread,
            clock=Clock(),
            hashPool=inlinePool(),
        )
        login = self.check(checker, "apr1", "apr1-pw")
        changed = path.read_text().replace("apr1:", "apr1:{SHA}newer-", 1)
        path.write_text(changed)
        thread.runAll()
        self.assertEqual(self.successResultOf(login), "apr1")
        self.assertEqual(path.read_text(), changed)

    def test_badLineSkipped(self) -> None:
        """
        A bad line in the file does not stop the other users' logins.
        """
        path = Path(self.mktemp())
        path.write_text("broken\n" + (DATA / "htpasswd.txt").read_text())
        checker = PasswordFile(path, runInThread=inline, hashPool=inlinePool())
        self.assertEqual(
            self.successResultOf(self.check(checker, "sha1", "sha1-pw")), "sha1"
        )

    def test_notOwnedNotRewritten(self) -> None:
        path = Path(self.mktemp())
        shutil.copy(DATA / "htpasswd.txt", path)
        before = path.read_text()
        self.successResultOf(
            self.check(PasswordFile(path, hashPool=inlinePool()), "apr1", "apr1-pw")
        )
        self.assertEqual(path.read_text(), before)

    def test_notOwnedNoRehashWork(self) -> None:
        """
        A file that is not ours is not rewritten, so a login with a hash in
        an old scheme does not pay for a new hash either.
        """
        checker = self.checker("htpasswd.txt")

        def rehash(*args: object) -> object:
            raise AssertionError("a new hash was made")

        self.patch(checker._context, "verify_and_update", rehash)
        self.assertEqual(
            self.successResultOf(self.check(checker, "apr1", "apr1-pw")), "apr1"
        )

    def test_shadowLine(self) -> None:
        """
        Whole /etc/shadow lines (with their ageing fields) are read too.
        """
        mk512 = parseHashes((DATA / "shadow-like.txt").read_text()).strict()["mk512"]
        path = Path(self.mktemp())
        path.write_text(
            f"root:*:19000:0:99999:7:::\nmk512:{mk512}:19000:0:99999:7:::\n"
        )
        checker = PasswordFile(path, hashPool=inlinePool())
        self.assertEqual(
            self.successResultOf(self.check(checker, "mk512", "mk512-pw")), "mk512"
        )
        self.failureResultOf(self.check(checker, "root", ""), KeycardRefused)

    def test_badFile(self) -> None:
        error = self.assertRaises(
            ValueError, lambda t: parseHashes(t).strict(), "alice:$6$x\nbob\n"
        )
        self.assertIn("line 2", str(error))

    def test_strcred(self) -> None:
        self.assertIsInstance(
            strcred.makeChecker(f"htpasswd:{DATA / 'htpasswd.txt'}"), PasswordFile
        )


class PasswordKeycardTests(SynchronousTestCase):
    def test_refusedWithoutTLS(self) -> None:
        """
        A password keycard is not sent over PB without TLS.
        """
        checker = PasswordFile(DATA / "htpasswd.txt", hashPool=inlinePool())
        server = KeycardTestServer.build([checker], AvatarRealm())
        d = server.connect().login([PasswordAnswerer("sha512", "sha512-pw")])
        self.failureResultOf(d, InsecureTransport)

    def test_inProcess(self) -> None:
        """
        In process (no PB), the keycard reaches the bouncer and the password
        is not sent back.
        """
        checker = PasswordFile(DATA / "htpasswd.txt", hashPool=inlinePool())
        server = KeycardTestServer.build([checker], AvatarRealm())
        keycard = PasswordKeycard(username="sha512", password="sha512-pw")
        result = self.successResultOf(server.bouncer.authenticate(keycard))
        self.assertIs(result.state, KeycardState.AUTHENTICATED)
        self.assertIsNone(keycard.password)

    def test_serverRefusesPasswordWithoutTLS(self) -> None:
        """
        A client that sends a password keycard over plain TCP anyway (its
        own code skips the check) is refused by the server.
        """
        checker = PasswordFile(DATA / "htpasswd.txt", hashPool=inlinePool())
        server = KeycardTestServer.build([checker], AvatarRealm())
        connection = server.connect()

        root = connection.factory.getRootObject()
        connection.flush()
        kind = PasswordKeycard.kind.encode()
        d = self.successResultOf(root).callRemote(
            "login", kind, 0, None, b"sha512", b"sha512-pw"
        )
        connection.flush()
        self.assertTrue(self.failureResultOf(d).check(InsecureTransport))
