"""
Tests for the C{keycard} command's parts, without a process: revoking what
matches (and saying when nothing does), removing a user's tokens, listing,
the arguments, C{keycard login}'s answerers and deadlines, and where
C{keycard keys rewrap} stops before reaching a store.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import getpass as getpass_
import io
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import attrs
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.test.iosim import FakeTransport, connect
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from twisted_keycard import KeycardRefused
from twisted_keycard.admin._cli import CommandError, parser, readPassword
from twisted_keycard.admin._login import (
    FromAgent,
    LoginFailed,
    answererFor,
    hmacKey,
    logIn,
    tokenAnswerer,
)
from twisted_keycard.admin._operations import (
    asJSON,
    init,
    revokeMatching,
    revokeUser,
    rewrapKeys,
    selectKeycards,
    table,
    userList,
)
from twisted_keycard.error import KeycardError
from twisted_keycard.hmackeys import HMACAnswerer
from twisted_keycard.pb._root import KeycardRoot
from twisted_keycard.pb._serverfactory import KeycardServerFactory
from twisted_keycard.scram import SCRAMAnswerer, Verifier
from twisted_keycard.service import DataDir
from twisted_keycard.service._checkers import PasswordChallenger
from twisted_keycard.service._startup import clientEndpoint
from twisted_keycard.sshkeys import SSHAnswerer
from twisted_keycard.store._interfaces import IssuedKeycard
from twisted_keycard.store._memory import MemoryStore
from twisted_keycard.store.redis import KeyEncryptionKey
from twisted_keycard.store.sqlite import FORMAT
from twisted_keycard.testing import KeycardTestServer

from ._realm import AvatarRealm

SSH = Path(__file__).resolve().parent / "data" / "ssh"


def record(keycardId: str, avatar: str, requester: str, issued: float) -> IssuedKeycard:
    return IssuedKeycard(
        keycardId=keycardId,
        avatarId=avatar,
        requesterName=requester,
        bouncerName="b",
        keycardType="twisted_keycard.scram-sha-256",
        address="127.0.0.1",
        issued=issued,
        duration=3600.0,
        expires=issued + 3600.0,
        familyId=keycardId,
    )


class KeycardsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = MemoryStore()
        self.clock = Clock()
        self.clock.advance(1_000_000)
        for r in [
            record("k1", "alice", "web", 10.0),
            record("k2", "alice", "chat", 20.0),
            record("k3", "bob\x1b[2J", "web", 30.0),
        ]:
            self.successResultOf(self.store.add(r))

    def revoke(
        self, keycardId: str | None, avatar: str | None, requester: str | None
    ) -> Any:
        return self.successResultOf(
            Deferred.fromCoroutine(
                revokeMatching(
                    self.store, self.clock, keycardId, avatar, requester, "test"
                )
            )
        )

    def test_nothingMatches(self) -> None:
        """
        An id, avatar or requester with nothing on record revokes nothing
        and says so.
        """
        for args, text in [
            (("nosuch", None, None), "no keycard nosuch on record"),
            ((None, "carol", None), "no keycard of avatar carol on record"),
            ((None, None, "ftp"), "no keycard issued through requester ftp"),
        ]:
            outcome = self.revoke(*args)
            self.assertFalse(outcome.matched)
            self.assertIn(text, outcome.lines[0])
        self.assertFalse(self.successResultOf(self.store.isRevoked("nosuch")))
        self.assertFalse(self.successResultOf(self.store.isRevoked("avatar:carol")))

    def test_revokes(self) -> None:
        outcome = self.revoke(None, "alice", None)
        self.assertTrue(outcome.matched)
        self.assertIn("of avatar alice (2 keycards on record)", outcome.lines[0])
        for mark in ["avatar:alice", "family:k1", "family:k2"]:
            self.assertTrue(self.successResultOf(self.store.isRevoked(mark)))
        self.assertFalse(self.successResultOf(self.store.isRevoked("family:k3")))
        outcome = self.revoke("k3", None, None)
        self.assertTrue(self.successResultOf(self.store.isRevoked("k3")))
        self.successResultOf(self.store.remove("k3"))
        outcome = self.revoke("k3", None, None)
        self.assertTrue(outcome.matched)
        self.assertEqual(outcome.lines, ["keycard k3 is already revoked"])

    def test_revokeUser(self) -> None:
        """
        A removed user's keycards and tokens are revoked.
        """
        line = self.successResultOf(
            Deferred.fromCoroutine(revokeUser(self.store, self.clock, "alice"))
        )
        self.assertIn("revoked 2 keycards and every token of alice", line)
        for mark in ["family:k1", "family:k2", "avatar:alice"]:
            self.assertTrue(self.successResultOf(self.store.isRevoked(mark)))
        self.assertFalse(self.successResultOf(self.store.isRevoked("family:k3")))

    def test_revokeOneId(self) -> None:
        """
        Revoking one id says what was counted: the keycard and its family
        (the token logins its password login started), not "2 keycard(s)"
        for the one id given (issue 27).
        """
        child = attrs.evolve(record("k4", "alice", "web", 40.0), familyId="k1")
        self.successResultOf(self.store.add(child))
        outcome = self.revoke("k1", None, None)
        self.assertEqual(
            outcome.lines,
            [
                "revoked keycard k1 and its family: 2 keycards on record, and their"
                " tokens; running bouncers refuse them within a second"
            ],
        )
        self.assertTrue(self.successResultOf(self.store.isRevoked("family:k1")))
        outcome = self.revoke("k2", None, None)
        self.assertEqual(
            outcome.lines,
            [
                "revoked keycard k2 and its token (no other keycard of its family on"
                " record); running bouncers refuse them within a second"
            ],
        )
        outcome = self.revoke(None, None, "web")
        self.assertIn(
            "issued through requester web and their families (3 keycards on record)",
            outcome.lines[0],
        )

    def test_select(self) -> None:
        def ids(avatar: str | None, requester: str | None) -> list[str]:
            records = self.successResultOf(
                Deferred.fromCoroutine(selectKeycards(self.store, avatar, requester))
            )
            return [r.keycardId for r in records]

        self.assertEqual(ids(None, None), ["k1", "k2", "k3"])
        self.assertEqual(ids("alice", None), ["k1", "k2"])
        self.assertEqual(ids(None, "web"), ["k1", "k3"])
        self.assertEqual(ids("alice", "web"), ["k1"])

    def test_output(self) -> None:
        """
        The table escapes peers' names; the JSON has every field and ISO
        8601 times.
        """
        records = self.successResultOf(
            Deferred.fromCoroutine(selectKeycards(self.store))
        )
        self.assertNotIn("\x1b", "\n".join(table(records)))
        [first, *_] = json.loads(asJSON(records))
        self.assertEqual(first["id"], "k1")
        self.assertEqual(first["issued"], "1970-01-01T00:00:10+00:00")
        self.assertEqual(first["kind"], "twisted_keycard.scram-sha-256")
        self.assertNotIn("\x1b", asJSON(records))


class ParserTests(SynchronousTestCase):
    def refused(self, *argv: str) -> str:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), self.assertRaises(SystemExit) as caught:
            parser().parse_args(list(argv))
        self.assertEqual(caught.exception.code, 2)
        self.assertEqual(len(err.getvalue().strip().splitlines()), 1, err.getvalue())
        return err.getvalue()

    def test_graceMustNotBeNegative(self) -> None:
        self.assertIn("0 or more", self.refused("keys", "rotate", "--grace", "-1"))
        self.assertIn("0 or more", self.refused("keys", "rotate", "--grace", "inf"))
        args = parser().parse_args(["keys", "rotate", "--grace", "0"])
        self.assertEqual(args.grace, 0.0)

    def test_oneLine(self) -> None:
        self.assertIn("--connect", self.refused("login", "alice"))
        self.assertIn("invalid choice", self.refused("login", "--kind", "x"))

    def test_unknownOptionFirst(self) -> None:
        """
        An unknown option is the first error, with the option it most likely
        stands for: a mistyped C{--conect} was reported as a missing
        C{--connect} (issue 27).
        """
        for argv, text in [
            (
                ("login", "--conect", "tcp:h:1", "alice"),
                "keycard login: unknown option --conect: did you mean --connect?",
            ),
            (
                ("login", "--connect", "tcp:h:1", "--conect=x", "alice"),
                "keycard login: unknown option --conect: did you mean --connect?",
            ),
            (
                ("login", "--kind", "nosuch", "--tiemout", "3", "alice"),
                "unknown option --tiemout: did you mean --timeout?",
            ),
            (
                ("user", "add", "--data-dri", "d", "alice"),
                "keycard user add: unknown option --data-dri: did you mean --data-dir?",
            ),
            (("--conect", "login"), "keycard: unknown option --conect"),
            (("revoke", "-x"), "keycard revoke: unknown option -x"),
        ]:
            err = self.refused(*argv)
            self.assertIn(text, err)
            self.assertNotIn("required", err)
        # What argparse takes for values and abbreviations stays taken.
        args = parser().parse_args(
            ["login", "--conn", "tcp:h:1", "--timeout", "3", "a"]
        )
        self.assertEqual((args.connect, args.timeout), ("tcp:h:1", 3.0))
        args = parser().parse_args(["revoke", "--reason", "- why", "--", "-id"])
        self.assertEqual((args.reason, args.keycardId), ("- why", "-id"))
        self.assertIn("0 or more", self.refused("keys", "rotate", "--grace", "-1"))
        self.assertIn("ambiguous option", self.refused("login", "--c", "x", "a"))

    def test_version(self) -> None:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), self.assertRaises(SystemExit):
            parser().parse_args(["--version"])
        self.assertRegex(out.getvalue(), r"^keycard \d")
        self.assertIn(f"(SQLite store format {FORMAT})", out.getvalue())

    def test_everyArgumentHasHelp(self) -> None:
        def walk(p: argparse.ArgumentParser, path: str) -> None:
            for action in p._actions:
                if isinstance(action, argparse._SubParsersAction):
                    for name, child in action.choices.items():
                        walk(child, f"{path} {name}")
                    continue
                self.assertTrue(action.help, f"{path} {action.dest}")

        walk(parser(), "keycard")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class UsersTests(SynchronousTestCase):
    def prompted(self, *typed: str) -> tuple[list[str], str | Exception]:
        """
        L{readPassword} for a new password on a terminal where C{typed} is
        typed at each prompt: the prompts, and the password or the error.
        """
        answers = iter(typed)
        prompts: list[str] = []

        def getpass(prompt: str = "") -> str:
            prompts.append(prompt)
            return next(answers)

        self.patch(sys, "stdin", _Terminal())
        self.patch(getpass_, "getpass", getpass)
        try:
            return prompts, readPassword(confirm=True)
        except CommandError as e:
            return prompts, e

    def test_newPasswordTwice(self) -> None:
        """
        On a terminal a new password is asked twice (it is typed unseen: a
        typo would be saved), and two that differ change nothing.
        """
        self.assertEqual(
            self.prompted("s3cret", "s3cret"),
            (["Password: ", "Password (again): "], "s3cret"),
        )
        prompts, error = self.prompted("s3cret", "s3cert")
        self.assertEqual(len(prompts), 2)
        self.assertEqual(str(error), "the two passwords differ: nothing changed")
        prompts, error = self.prompted("")
        self.assertEqual((prompts, str(error)), (["Password: "], "no password given"))

    def test_newPasswordFromStandardInput(self) -> None:
        """
        Not on a terminal, the first line of standard input, read once.
        """
        self.patch(sys, "stdin", io.StringIO("s3cret\nmore\n"))
        self.assertEqual(readPassword(confirm=True), "s3cret")

    def listed(self, text: str) -> tuple[str, str]:
        data = DataDir(Path(self.mktemp()))
        data.path.mkdir()
        data.users.write_text(text)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            self.assertEqual(userList(data), 0)
        return out.getvalue(), err.getvalue().replace(str(data.path), "D")

    def test_listSkipsMalformedLines(self) -> None:
        """
        C{keycard user list} lists the users a bouncer takes, and names on
        standard error each line it leaves out: it listed every line's first
        field as a user (issue 27).
        """
        good = Verifier.fromPassword("pw", iterations=4096).toString()
        out, err = self.listed(
            f"# users\nalice:{good}\ngarbage\nbob:SCRAM-SHA-256$x\n"
            f"carol:{good}\n\ncarol:{good}\neve\x1b[2J:{good}\n"
        )
        self.assertEqual(out, "alice\neve\\x1b[2J\n")
        self.assertEqual(
            err.splitlines(),
            [
                "keycard: D/users.scram: line 3 left out:"
                " expected name:SCRAM-SHA-256$...",
                "keycard: D/users.scram: line 4 left out: not a SCRAM-SHA-256 verifier",
                "keycard: D/users.scram: line 7 left out:"
                " user 'carol' is on more than one line: none of them is taken",
            ],
        )

    def test_listNoUsers(self) -> None:
        """
        An empty listing says so, on standard error: it printed nothing at
        all.
        """
        hint = "add one with: keycard user add --data-dir D NAME"
        self.assertEqual(
            self.listed("# none yet\n"),
            ("", f"keycard: no users in D/users.scram; {hint}\n"),
        )
        out, err = self.listed("garbage\n")
        self.assertEqual(out, "")
        self.assertIn(
            f"keycard: no users in D/users.scram that a bouncer takes; {hint}", err
        )


class AnswererTests(SynchronousTestCase):
    def private(self, data: bytes, mode: int = 0o600) -> str:
        path: str = self.mktemp()
        Path(path).write_bytes(data)
        os.chmod(path, mode)
        return path

    def test_kinds(self) -> None:
        def secret(prompt: str) -> str:
            return "pw"

        self.assertIsInstance(answererFor("scram", "alice", secret), SCRAMAnswerer)
        for kind in ["srp", "password"]:
            answerer = answererFor(kind, "alice", secret)
            assert not isinstance(answerer, FromAgent)
            self.assertEqual(
                answerer.keycardClass.keycardType.split(".")[0], "twisted_keycard"
            )
        with self.assertRaises(LoginFailed):
            answererFor("hmac", "alice", secret)

    def test_hmacKeyFile(self) -> None:
        key = os.urandom(32)
        encoded = base64.b64encode(key)
        self.assertEqual(hmacKey(self.private(encoded + b"\n")), key)
        self.assertEqual(hmacKey(self.private(b"alice:" + encoded)), key)
        answerer = answererFor("hmac", "alice", str, self.private(encoded))
        self.assertIsInstance(answerer, HMACAnswerer)
        with self.assertRaises(LoginFailed) as caught:
            hmacKey(self.private(b"not base64!"))
        self.assertIn("no base64 key", str(caught.exception))
        with self.assertRaises(LoginFailed) as caught:
            hmacKey(self.private(encoded, 0o644))
        self.assertIn("must be private", str(caught.exception))

    def test_encryptedSSHKey(self) -> None:
        """
        An encrypted OpenSSH key's passphrase is read as passwords are; a
        wrong one is one line.
        """
        key = ed25519.Ed25519PrivateKey.generate()
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.BestAvailableEncryption(b"open sesame"),
        )
        path = self.private(data)
        prompts: list[str] = []

        def passphrase(prompt: str) -> str:
            prompts.append(prompt)
            return "open sesame"

        answerer = answererFor("sshkey", "alice", passphrase, path)
        self.assertIsInstance(answerer, SSHAnswerer)
        self.assertEqual(prompts, [f"Passphrase for {path}: "])
        with self.assertRaises(LoginFailed) as caught:
            answererFor("sshkey", "alice", lambda p: "wrong", path)
        self.assertEqual(str(caught.exception), f"{path}: wrong passphrase")

    def test_sshCertificate(self) -> None:
        key = self.mktemp()
        shutil.copy(SSH / "user", key)
        os.chmod(key, 0o600)
        answerer = answererFor("sshkey", "alice", str, key, str(SSH / "good-cert.pub"))
        self.assertIsInstance(answerer, SSHAnswerer)
        with self.assertRaises(LoginFailed):
            answererFor("sshkey", "alice", str, key, str(SSH / "other-ca.pub"))

    def test_tokenFile(self) -> None:
        with self.assertRaises(LoginFailed) as caught:
            tokenAnswerer(self.mktemp())
        self.assertIn("cannot read the token file", str(caught.exception))
        with self.assertRaises(LoginFailed):
            tokenAnswerer(self.private(b"\n"))
        self.assertIsNotNone(tokenAnswerer(self.private(b"abc\n")))


@implementer(IStreamClientEndpoint)
class _SilentEndpoint:
    """
    Connects at once to a server that never answers.
    """

    def connect(self, factory: Any) -> Deferred[Any]:
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 8800))
        protocol.makeConnection(StringTransport())
        return succeed(protocol)


@implementer(IStreamClientEndpoint)
class _MemoryEndpoint:
    """
    Connects to a keycard root in memory.
    """

    def __init__(self, root: KeycardRoot, clock: Clock) -> None:
        self.root = root
        self.clock = clock
        self.pump: Any = None

    def connect(self, factory: Any) -> Deferred[Any]:
        server = IPv4Address("TCP", "127.0.0.1", 8800)
        client = IPv4Address("TCP", "127.0.0.1", 40000)
        serverBroker = KeycardServerFactory(self.root).buildProtocol(client)
        clientBroker = factory.buildProtocol(server)
        self.pump = connect(
            serverBroker,
            FakeTransport(serverBroker, True, server, client),
            clientBroker,
            FakeTransport(clientBroker, False, client, server),
            clock=self.clock,
        )
        return succeed(clientBroker)


class LogInTests(SynchronousTestCase):
    def test_connectTimeout(self) -> None:
        reactor = MemoryReactorClock()
        endpoint = clientEndpoint(reactor, "tcp:192.0.2.1:8800")
        d = Deferred.fromCoroutine(
            logIn(reactor, endpoint, SCRAMAnswerer("a", "b"), 30.0, "tcp:...")
        )
        self.assertNoResult(d)
        reactor.advance(30)
        failure = self.failureResultOf(d, LoginFailed)
        self.assertEqual(str(failure.value), "no connection within 30 s")

    def test_answerTimeout(self) -> None:
        """
        A server that never answers (a TLS one reached over plain TCP) fails
        the login after the timeout, with a hint.
        """
        clock = Clock()
        d = Deferred.fromCoroutine(
            logIn(clock, _SilentEndpoint(), SCRAMAnswerer("a", "b"), 5.0, "tcp:h:1")
        )
        clock.advance(4.9)
        self.assertNoResult(d)
        clock.advance(0.1)
        failure = self.failureResultOf(d, LoginFailed)
        self.assertIn("no answer within 5 s: is it a TLS endpoint?", str(failure.value))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_kindNotTaken(self) -> None:
        """
        The server takes none of the client's kinds: the refusal says which
        it takes.
        """
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        server = KeycardTestServer.build([PasswordChallenger(checker)], AvatarRealm())
        endpoint = _MemoryEndpoint(server.root, server.clock)
        d = Deferred.fromCoroutine(
            logIn(server.clock, endpoint, SCRAMAnswerer("a", "b"), 5.0, "tcp:h:1")
        )
        endpoint.pump.flush()
        failure = self.failureResultOf(d, KeycardRefused)
        self.assertEqual(
            str(failure.value),
            "the server takes none of these keycard kinds (scram); it takes: password",
        )


class RewrapTests(SynchronousTestCase):
    """
    C{keycard keys rewrap} and C{keycard init --store-key-file}, where they
    stop before reaching a store.
    """

    def test_parsed(self) -> None:
        args = parser().parse_args(["keys", "rewrap", "--data-dir", "D"])
        self.assertEqual((args.action, args.data_dir), ("rewrap", "D"))
        args = parser().parse_args(["init", "D", "--store-key-file", "K"])
        self.assertEqual(args.store_key_file, "K")

    def test_sqliteRefused(self) -> None:
        data = DataDir.create(Path(self.mktemp()) / "data")
        with self.assertRaises(KeycardError) as caught:
            rewrapKeys(data)
        self.assertIn("keys rewrap is for a Redis store", str(caught.exception))
        with self.assertRaises(KeycardError) as caught:
            init(str(Path(self.mktemp()) / "d"), None, None, None, "store.kek")
        self.assertIn("--store-key-file is for a Redis", str(caught.exception))

    def test_unfinishedRewrap(self) -> None:
        """
        A C{store.kek.new} left by a rewrap that stopped may be the only key
        that opens the store: it is never overwritten, and the error names
        it and its key's id.
        """
        data = DataDir.create(Path(self.mktemp()) / "data", "redis://127.0.0.1:1/0")
        left = KeyEncryptionKey.generate()
        pending = data.path / "store.kek.new"
        pending.write_bytes(left.toFileContent())
        before = data.keyEncryptionKeyFile.read_bytes()
        with self.assertRaises(KeycardError) as caught:
            rewrapKeys(data)
        self.assertIn(str(pending), str(caught.exception))
        self.assertIn(left.id, str(caught.exception))
        self.assertEqual(pending.read_bytes(), left.toFileContent())
        self.assertEqual(data.keyEncryptionKeyFile.read_bytes(), before)
