"""
Integration tests of the C{keycard} command against a real bouncer process:
every keycard kind from the command line, plain one-line messages for what
goes wrong, and revocation that says when it matched nothing.
"""

from __future__ import annotations

import base64
import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from twisted_keycard.srp import SRPVerifier

from ._procs import (
    ENV,
    TIMEOUT,
    accepts,
    bouncer,
    freePort,
    keycard,
    started,
    waitFor,
)

PASSWORD = "correct horse battery staple"


def private(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


@pytest.mark.integration
class KeycardCommandTests(TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        self.data = self.dir / "data"
        result = keycard("init", str(self.data), "--dev-cert", "localhost")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.initOutput = result.stdout
        result = keycard(
            "user", "add", "--data-dir", str(self.data), "alice", stdin=PASSWORD + "\n"
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.trust = self.data / "tls" / "trust"

    async def start(self, tls: bool, *options: str) -> int:
        port = freePort()
        pem = self.data / "tls" / "server.pem"
        listen = (
            f"ssl:{port}:interface=127.0.0.1:privateKey={pem}"
            if tls
            else f"tcp:{port}:interface=127.0.0.1"
        )
        process = bouncer(self.data, listen, self.dir / f"b-{port}.log", *options)
        self.addCleanup(process.stop)
        await started(process, port)
        return port

    def assertLoggedIn(self, result: object, avatar: str) -> None:
        out = getattr(result, "stdout", "") + getattr(result, "stderr", "")
        self.assertEqual(getattr(result, "returncode", None), 0, out)
        self.assertIn(f"avatar id:  {avatar}", out)

    def assertOneLine(self, result: object, code: int, text: str) -> None:
        stderr: str = getattr(result, "stderr", "")
        stdout: str = getattr(result, "stdout", "")
        self.assertEqual(getattr(result, "returncode", None), code, stdout + stderr)
        lines = (stdout + stderr).strip().splitlines()
        self.assertEqual(len(lines), 1, stdout + stderr)
        self.assertIn(text, lines[0])
        self.assertNotIn("Traceback", stdout + stderr)

    def test_everyKind(self) -> Deferred[None]:
        """
        SCRAM, SRP, a password (a stock twisted.cred checker, over TLS), an
        HMAC key and an encrypted SSH key, its passphrase on standard input.
        """
        verifier = SRPVerifier.fromPassword("alice", PASSWORD).toString()
        srp = private(self.dir / "users.srp", f"alice:{verifier}\n".encode())
        key = os.urandom(32)
        keys = private(
            self.dir / "clients.keys", b"alice:" + base64.b64encode(key) + b"\n"
        )
        hmacFile = private(self.dir / "alice.key", base64.b64encode(key))
        sshKey = ed25519.Ed25519PrivateKey.generate()
        sshFile = private(
            self.dir / "id_ed25519",
            sshKey.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.BestAvailableEncryption(b"open sesame"),
            ),
        )
        public = sshKey.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        authorized = private(self.dir / "authorized", b"alice " + public + b"\n")

        async def go() -> None:
            port = await self.start(
                True,
                "--auth",
                f"scram:{self.data / 'users.scram'}",
                "--auth",
                f"srp:{srp}",
                "--auth",
                f"hmac:{keys}",
                "--auth",
                f"sshkeys:{authorized}",
                "--auth",
                f"memory:bob:{PASSWORD}",
            )
            connect = f"tls:localhost:{port}:trustRoots={self.trust}"
            for kind, user in [
                ("scram", "alice"),
                ("srp", "alice"),
                ("password", "bob"),
            ]:
                result = keycard(
                    "login", "--connect", connect, "--kind", kind, user,
                    stdin=PASSWORD + "\n",
                )  # fmt: skip
                self.assertLoggedIn(result, user)
            result = keycard(
                "login", "--connect", connect, "--kind", "hmac",
                "--key-file", str(hmacFile), "alice",
            )  # fmt: skip
            self.assertLoggedIn(result, "alice")
            result = keycard(
                "login", "--connect", connect, "--kind", "sshkey",
                "--key-file", str(sshFile), "alice", stdin="open sesame\n",
            )  # fmt: skip
            self.assertLoggedIn(result, "alice")
            wrong = keycard(
                "login", "--connect", connect, "--kind", "sshkey",
                "--key-file", str(sshFile), "alice", stdin="wrong\n",
            )  # fmt: skip
            self.assertOneLine(wrong, 2, "wrong passphrase")

        return ensureDeferred(go())

    def test_crtTrustRoot(self) -> Deferred[None]:
        """
        A CA certificate saved as C{.crt} in the C{trustRoots} directory is
        not read (Twisted reads C{*.pem}): the refusal says so (issue 26:
        only "certificate is not trusted"); saved as C{.pem}, it logs in.
        """

        async def go() -> None:
            port = await self.start(True)
            roots = self.dir / "roots"
            roots.mkdir()
            crt = roots / "company-ca.crt"
            crt.write_bytes((self.trust / "ca.pem").read_bytes())
            connect = f"tls:localhost:{port}:trustRoots={roots}"
            login = ("login", "--connect", connect, "alice")
            refused = keycard(*login, stdin=PASSWORD + "\n")
            self.assertOneLine(
                refused,
                2,
                f"(trustRoots={roots} reads only *.pem files, and it holds"
                " company-ca.crt: save the CA certificate there as a .pem file,",
            )
            crt.rename(roots / "company-ca.pem")
            self.assertLoggedIn(keycard(*login, stdin=PASSWORD + "\n"), "alice")

        return ensureDeferred(go())

    def test_plainMessages(self) -> Deferred[None]:
        """
        A kind the server does not take, TLS against plain TCP and the
        reverse, missing trust roots, token file or port: one line each.
        """

        async def go() -> None:
            tlsPort = await self.start(True)
            tcpPort = await self.start(False)
            tcp = f"tcp:127.0.0.1:{tcpPort}"
            for args, code, text in [
                (
                    ("--connect", tcp, "--kind", "srp", "alice"),
                    1,
                    "the server takes none of these keycard kinds (srp);"
                    " it takes: scram, token",
                ),
                (
                    ("--connect", f"tcp:127.0.0.1:{tlsPort}", "--timeout", "2", "a"),
                    2,
                    "no answer within 2 s: is it a TLS endpoint?",
                ),
                (
                    (
                        "--connect",
                        f"tls:localhost:{tcpPort}:trustRoots={self.trust}",
                        "a",
                    ),
                    2,
                    "TLS",
                ),
                (
                    ("--connect", f"tls:localhost:{tlsPort}:trustRoots=/no/dir", "a"),
                    2,
                    "trustRoots=/no/dir is not a directory of PEM certificates",
                ),
                (("--connect", "tcp:127.0.0.1", "a"), 2, "no port given"),
                (
                    ("--connect", tcp, "--token-file", str(self.dir / "none")),
                    2,
                    "cannot read the token file",
                ),
                (
                    ("--connect", tcp, "--kind", "password", "alice"),
                    1,
                    "takes none of these keycard kinds (password)",
                ),
            ]:
                result = keycard("login", *args, stdin=PASSWORD + "\n")
                self.assertOneLine(result, code, text)

        return ensureDeferred(go())

    def test_removeAndRevoke(self) -> Deferred[None]:
        """
        Removing a user revokes their token; revoking what matches nothing
        says so and exits 1; the listing filters and prints JSON.
        """

        async def go() -> None:
            port = await self.start(False)
            connect = f"tcp:127.0.0.1:{port}"
            token = self.dir / "alice.token"
            login = keycard(
                "login", "--connect", connect, "alice", "--save-token", str(token),
                stdin=PASSWORD + "\n",
            )  # fmt: skip
            self.assertLoggedIn(login, "alice")
            data = ("--data-dir", str(self.data))
            listing = keycard("list", *data, "--json", "--avatar", "alice")
            [entry] = json.loads(listing.stdout)
            self.assertEqual(entry["avatar"], "alice")
            self.assertRegex(
                entry["expires"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$"
            )
            self.assertEqual(
                json.loads(keycard("list", *data, "--json", "--avatar", "x").stdout), []
            )
            for args, text in [
                (("nosuchid",), "no keycard nosuchid on record: nothing revoked"),
                (("--avatar", "carol"), "no keycard of avatar carol on record"),
                (("--requester", "ftp"), "no keycard issued through requester ftp"),
            ]:
                self.assertOneLine(keycard("revoke", *data, *args), 1, text)
            removed = keycard("user", "remove", *data, "alice")
            self.assertEqual(removed.returncode, 0, removed.stderr)
            self.assertIn("removed user alice", removed.stdout)
            self.assertIn("every token of alice", removed.stdout)
            # The bouncer reads revocations made elsewhere within its follow
            # interval (a second): until then it may still take the token.
            deadline = time.monotonic() + 10
            while True:
                refused = keycard(
                    "login", "--connect", connect, "--token-file", str(token)
                )
                if refused.returncode != 0 or time.monotonic() > deadline:
                    break
                await deferLater(reactor, 0.1, lambda: None)
            self.assertEqual(refused.returncode, 1, refused.stdout + refused.stderr)
            self.assertEqual(refused.stdout.strip(), "keycard: login refused")
            grace = keycard("keys", "rotate", *data, "--grace", "-1")
            self.assertOneLine(
                grace, 2, "--grace: takes a number of seconds, 0 or more"
            )

        return ensureDeferred(go())

    def test_revokeOneId(self) -> Deferred[None]:
        """
        A client that logs in and leaves leaves one line in the bouncer's
        log, its login: nothing that reads like a revocation.  Revoking one
        keycard id says what it counted: the keycard and its family (here
        the token login it began), not "2 keycard(s)" for one id (issue 27).
        """

        async def go() -> None:
            port = await self.start(False)
            [log] = self.dir.glob(f"b-{port}.log")
            connect = f"tcp:127.0.0.1:{port}"
            token = self.dir / "alice.token"
            login = keycard(
                "login", "--connect", connect, "alice", "--save-token", str(token),
                stdin=PASSWORD + "\n",
            )  # fmt: skip
            self.assertLoggedIn(login, "alice")
            again = keycard("login", "--connect", connect, "--token-file", str(token))
            self.assertLoggedIn(again, "alice")
            data = ("--data-dir", str(self.data))

            def released() -> list[dict[str, Any]]:
                listing = keycard("list", *data, "--json", "--avatar", "alice")
                records: list[dict[str, Any]] = json.loads(listing.stdout)
                return [r for r in records if not r["held"]]

            # Both clients have left once the bouncer released their keycards.
            await waitFor(lambda: len(released()) == 2, "both keycards released")
            # The password login's keycard, and the token login's, its child.
            [first] = [r for r in released() if r["parent"] is None]
            [second] = [r for r in released() if r["parent"] is not None]
            self.assertEqual(second["parent"], first["id"])
            lines = log.read_text().splitlines()
            for keycardId in (first["id"], second["id"]):
                [line] = [line for line in lines if keycardId in line]
                self.assertIn(f"keycard {keycardId} issued to alice", line)
            self.assertNotIn("removed", log.read_text())
            self.assertNotIn("revoked", log.read_text())

            revoked = keycard("revoke", *data, first["id"])
            self.assertOneLine(
                revoked,
                0,
                f"revoked keycard {first['id']} and its family: 2 keycards on"
                " record, and their tokens; running bouncers refuse them within"
                " a second",
            )

        return ensureDeferred(go())

    def test_twoListens(self) -> Deferred[None]:
        """
        One bouncer with two C{--listen} endpoints, TLS and plain TCP: a
        login works on each (issue 26: the second replaced the first).
        """

        async def go() -> None:
            tls, tcp = freePort(), freePort()
            pem = self.data / "tls" / "server.pem"
            process = bouncer(
                self.data,
                f"ssl:{tls}:interface=127.0.0.1:privateKey={pem}",
                self.dir / "two.log",
                "--listen",
                f"tcp:{tcp}:interface=127.0.0.1",
            )
            self.addCleanup(process.stop)
            await started(process, tls)
            await waitFor(lambda: accepts(tcp), "the second endpoint")
            for connect in [
                f"tls:localhost:{tls}:trustRoots={self.trust}",
                f"tcp:127.0.0.1:{tcp}",
            ]:
                login = keycard(
                    "login", "--connect", connect, "alice", stdin=PASSWORD + "\n"
                )
                self.assertLoggedIn(login, "alice")

        return ensureDeferred(go())

    def test_devCertListensOnLoopback(self) -> None:
        """
        The listen endpoint C{keycard init --dev-cert} prints is bound to
        loopback.
        """
        self.assertIn(
            "server: ssl:8800:interface=127.0.0.1:privateKey=", self.initOutput
        )


@pytest.mark.integration
class ReaderGoneTests(TestCase):
    def test_quietWhenTheReaderHasGone(self) -> None:
        """
        When whoever reads the command's output has gone (C{keycard ... |
        head -1}), the command stops quietly: no "Broken pipe" line.
        """
        directory = Path(self.mktemp()).resolve()
        read, write = os.pipe()
        os.close(read)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "twisted_keycard.admin", "init", str(directory)],
                stdout=write,
                stderr=subprocess.PIPE,
                text=True,
                env=ENV,
                timeout=TIMEOUT,
                check=False,
            )
        finally:
            os.close(write)
        self.assertEqual(done.stderr, "")
        self.assertEqual(done.returncode, 2)


def _defaultInterrupt() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.integration
class InterruptTests(TestCase):
    """
    Ctrl-C (SIGINT) anywhere in the command: it stops at once with one line
    and the status a shell gives for SIGINT, 130 (issue 27: a traceback,
    then a wait for the timeout).
    """

    def keycardProcess(self, *args: str, **options: Any) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "twisted_keycard.admin", *args],
            text=True,
            env=ENV,
            # Ctrl-C reaches the command as from a terminal's foreground even
            # when the tests run where SIGINT is ignored (a shell's
            # background job, nohup): the command would inherit that, and
            # the test would wait out its timeout.
            preexec_fn=_defaultInterrupt,
            **options,
        )
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        return process

    def test_whileLoggingIn(self) -> None:
        """
        Interrupted while it waits for a server that never answers.
        """
        server = socket.socket()
        self.addCleanup(server.close)
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(TIMEOUT)
        port = server.getsockname()[1]
        process = self.keycardProcess(
            *("login", "--connect", f"tcp:127.0.0.1:{port}", "alice"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdin is not None
        process.stdin.write(PASSWORD + "\n")
        process.stdin.flush()
        connection, _ = server.accept()
        self.addCleanup(connection.close)
        process.send_signal(signal.SIGINT)
        start = time.monotonic()
        _, err = process.communicate(timeout=TIMEOUT)
        self.assertLess(time.monotonic() - start, 2.0)
        self.assertEqual((process.returncode, err), (130, "keycard: interrupted\n"))

    def test_atThePasswordPrompt(self) -> None:
        """
        Interrupted at the password prompt of a terminal.
        """
        directory = Path(self.mktemp()).resolve()
        self.assertEqual(keycard("init", str(directory)).returncode, 0)
        controller, terminal = pty.openpty()
        self.addCleanup(os.close, controller)
        process = self.keycardProcess(
            *("user", "add", "--data-dir", str(directory), "alice"),
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
        )
        os.close(terminal)
        shown = b""
        while b"Password:" not in shown:
            ready, _, _ = select.select([controller], [], [], TIMEOUT)
            self.assertTrue(ready, shown)
            shown += os.read(controller, 1024)
        process.send_signal(signal.SIGINT)
        self.assertEqual(process.wait(timeout=TIMEOUT), 130)
        while True:
            try:
                chunk = os.read(controller, 1024)
            except OSError:  # the terminal's other end closed
                break
            if not chunk:
                break
            shown += chunk
        lines = [line.strip() for line in shown.decode().splitlines()]
        self.assertEqual(lines, ["Password:", "keycard: interrupted"])


@pytest.mark.integration
class NewcomerTests(TestCase):
    """
    The rough edges a newcomer met in the command (issue 27): a new password
    asked once on a terminal, users listed from malformed lines and nothing
    at all for none, a mistyped option reported as a missing one.
    """

    def setUp(self) -> None:
        self.data = Path(self.mktemp()).resolve()
        self.assertEqual(keycard("init", str(self.data)).returncode, 0)

    def onTerminal(self, *typed: str) -> tuple[int, list[str]]:
        """
        C{keycard user add alice} on a terminal where each of C{typed} is
        typed at a prompt: its exit status and the terminal's lines.
        """
        controller, terminal = pty.openpty()
        self.addCleanup(os.close, controller)
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "twisted_keycard.admin", "user", "add"),
                *("--data-dir", str(self.data), "alice"),
            ],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            env=ENV,
        )
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        os.close(terminal)
        shown = b""
        for answer in typed:
            prompted = shown.count(b":")
            while shown.count(b":") == prompted:
                ready, _, _ = select.select([controller], [], [], TIMEOUT)
                self.assertTrue(ready, shown)
                shown += os.read(controller, 1024)
            os.write(controller, answer.encode() + b"\n")
        code = process.wait(timeout=TIMEOUT)
        while True:
            try:
                chunk = os.read(controller, 1024)
            except OSError:  # the terminal's other end closed
                break
            if not chunk:
                break
            shown += chunk
        return code, [line.strip() for line in shown.decode().splitlines()]

    def users(self) -> subprocess.CompletedProcess[str]:
        return keycard("user", "list", "--data-dir", str(self.data))

    def test_newPasswordTwiceOnATerminal(self) -> None:
        """
        On a terminal, C{keycard user add} asks for the password twice, and
        two that differ change nothing.
        """
        code, lines = self.onTerminal("correct horse", "correct hrose")
        self.assertEqual(code, 2)
        self.assertEqual(
            lines,
            [
                "Password:",
                "Password (again):",
                "keycard: the two passwords differ: nothing changed",
            ],
        )
        self.assertEqual(self.users().stdout, "")
        code, lines = self.onTerminal("correct horse", "correct horse")
        self.assertEqual(
            (code, lines), (0, ["Password:", "Password (again):", "added user alice"])
        )
        self.assertEqual(self.users().stdout, "alice\n")

    def test_listUsers(self) -> None:
        """
        No users: a line on standard error says so.  Malformed lines: left
        out of the listing, each named on standard error.
        """
        listing = self.users()
        self.assertEqual((listing.returncode, listing.stdout), (0, ""))
        self.assertEqual(
            listing.stderr,
            f"keycard: no users in {self.data}/users.scram; add one with:"
            f" keycard user add --data-dir {self.data} NAME\n",
        )
        keycard("user", "add", "--data-dir", str(self.data), "bob", stdin="pw\n")
        with open(self.data / "users.scram", "a") as users:
            users.write("not a user line\n")
        listing = self.users()
        self.assertEqual((listing.returncode, listing.stdout), (0, "bob\n"))
        self.assertEqual(
            listing.stderr,
            f"keycard: {self.data}/users.scram: line 2 left out:"
            " expected name:SCRAM-SHA-256$...\n",
        )

    def test_mistypedOption(self) -> None:
        """
        A mistyped option is the one error, with the option meant.
        """
        done = keycard("login", "--conect", "tcp:127.0.0.1:8800", "alice")
        self.assertEqual(
            (done.returncode, done.stdout, done.stderr),
            (
                2,
                "",
                "keycard login: unknown option --conect: did you mean --connect?"
                " (see: keycard login --help)\n",
            ),
        )
