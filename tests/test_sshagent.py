"""
Integration tests of signing with a real OpenSSH C{ssh-agent}: keys made
by C{ssh-keygen} and loaded with C{ssh-add}, the agent's signatures checked
as the bouncer checks them, and C{keycard login --kind sshkey} against a
real bouncer with no key file, with a C{.pub} picking one of the agent's
keys, and with a certificate loaded in the agent.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import TestCase

from twisted_keycard.sshkeys import (
    AgentError,
    AgentKey,
    SSHAgentAnswerer,
    agentEndpoint,
    agentSign,
    listAgentKeys,
    verifyWith,
)

from ._procs import (
    ENV,
    ROOT,
    TIMEOUT,
    bouncer,
    freePort,
    needTool,
    reactor,
    started,
    waitFor,
)

pytestmark = pytest.mark.integration


class Agent:
    """
    A real C{ssh-agent -D} on a socket of its own, and keys made with
    C{ssh-keygen} in C{directory}.
    """

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        # A short path: a UNIX socket's is limited to about 100 bytes.
        self.socketDir = tempfile.mkdtemp(prefix="kc-agent-")
        self.socket = os.path.join(self.socketDir, "agent.sock")
        self.env = {**ENV, "SSH_AUTH_SOCK": self.socket}
        self.proc = subprocess.Popen(
            [needTool("ssh-agent"), "-D", "-a", self.socket],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(TIMEOUT)
        shutil.rmtree(self.socketDir, ignore_errors=True)

    def keygen(self, name: str, *args: str) -> Path:
        path = self.dir / name
        subprocess.run(
            [
                needTool("ssh-keygen"),
                "-q",
                "-N",
                "",
                "-C",
                name,
                "-f",
                str(path),
                *args,
            ],
            check=True,
            timeout=TIMEOUT,
        )
        return path

    def add(self, path: Path) -> None:
        subprocess.run(
            [needTool("ssh-add"), "-q", str(path)],
            check=True,
            env=self.env,
            timeout=TIMEOUT,
            capture_output=True,
        )

    def public(self, path: Path) -> str:
        return Path(f"{path}.pub").read_text().strip()


class SSHAgentTests(TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        self.agent = Agent(self.dir)
        self.addCleanup(self.agent.stop)
        self.keys = {
            "ed": self.agent.keygen("ed", "-t", "ed25519"),
            "ec": self.agent.keygen("ec", "-t", "ecdsa", "-b", "256"),
            "rsa": self.agent.keygen("rsa", "-t", "rsa", "-b", "2048"),
        }

    async def started(self) -> None:
        await waitFor(lambda: os.path.exists(self.agent.socket), "ssh-agent")
        for path in self.keys.values():
            self.agent.add(path)

    def test_signatures(self) -> Deferred[None]:
        """
        The agent lists its Ed25519, ECDSA and RSA keys, in the order they
        were added, and leaves out a nistp384 key saying why; what it signs
        with each checks as the bouncer checks a signature.
        """

        async def go() -> None:
            await self.started()
            self.agent.add(self.agent.keygen("ec384", "-t", "ecdsa", "-b", "384"))
            endpoint = agentEndpoint(reactor, self.agent.socket)
            keys, skipped = await listAgentKeys(endpoint)
            self.assertEqual([k.comment for k in keys], ["ed", "ec", "rsa"])
            self.assertEqual(len(skipped), 1)
            self.assertIn("only nistp256 ECDSA keys work from an agent", skipped[0])
            for key in keys:
                message = b"twisted-keycard context " + key.comment.encode()
                signature = await agentSign(endpoint, key, message)
                self.assertTrue(verifyWith(key.key, signature, message), key)
                self.assertFalse(verifyWith(key.key, signature, message + b"!"))
                fromFile = AgentKey.fromLine(self.agent.public(self.keys[key.comment]))
                self.assertEqual(fromFile.blob, key.blob)

        return ensureDeferred(go())

    def test_refusedAndMissing(self) -> Deferred[None]:
        """
        A key the agent does not hold: the agent's refusal, in one line;
        no agent at all: a line saying so.
        """

        async def go() -> None:
            await self.started()
            endpoint = agentEndpoint(reactor, self.agent.socket)
            other = AgentKey.fromLine(self.agent.public(self.agent.keygen("other")))
            answerer = SSHAgentAnswerer("alice", other, endpoint)
            self.assertIsNone(answerer.start().certificate)  # type: ignore[attr-defined]
            with self.assertRaises(AgentError) as e:
                await agentSign(endpoint, other, b"x")
            self.assertIn("the SSH agent refused to sign with other", str(e.exception))
            with self.assertRaises(AgentError) as e:
                agentEndpoint(reactor, str(self.dir / "nothing.sock"))
            self.assertIn("it is not running", str(e.exception))
            # A socket nobody listens on any more.
            dead = Agent(self.dir)
            await waitFor(lambda: os.path.exists(dead.socket), "ssh-agent")
            gone = agentEndpoint(reactor, dead.socket)
            dead.proc.send_signal(signal.SIGKILL)
            dead.proc.wait(TIMEOUT)
            with self.assertRaises(AgentError) as e:
                await listAgentKeys(gone)
            self.assertIn("cannot reach the SSH agent", str(e.exception))
            shutil.rmtree(dead.socketDir)

        return ensureDeferred(go())

    def keycard(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "twisted_keycard.admin", *args],
            capture_output=True,
            text=True,
            env=self.agent.env if env is None else env,
            cwd=ROOT,
            timeout=TIMEOUT,
            check=False,
        )

    def test_login(self) -> Deferred[None]:
        """
        C{keycard login --kind sshkey} against a real bouncer: with no key
        file the agent's keys are tried until one is taken; a C{.pub}
        picks the agent's key (another key the agent holds is not tried);
        a certificate the agent holds logs in through its CA; without an
        agent, or with a key it lacks, one line says so.
        """
        ca = self.agent.keygen("ca", "-t", "ed25519")
        user = self.agent.keygen("carol", "-t", "ed25519")
        subprocess.run(
            [needTool("ssh-keygen"), "-q", "-s", str(ca), "-I", "carol",
             "-n", "carol", "-V", "-5m:+1h", f"{user}.pub"],
            check=True, timeout=TIMEOUT, capture_output=True,
        )  # fmt: skip
        authorized = self.dir / "authorized"
        authorized.write_text(
            f"alice {self.agent.public(self.keys['rsa'])}\n"
            f"alice {self.agent.public(self.keys['ec'])}\n"
            f"carol cert-authority {self.agent.public(ca)}\n"
        )
        data = self.dir / "data"

        async def go() -> None:
            await self.started()
            self.agent.add(user)  # the key and its certificate
            result = self.keycard("init", str(data))
            self.assertEqual(result.returncode, 0, result.stderr)
            port = freePort()
            process = bouncer(
                data,
                f"tcp:{port}:interface=127.0.0.1",
                self.dir / "bouncer.log",
                "--auth",
                f"sshkeys:{authorized}",
            )
            self.addCleanup(process.stop)
            await started(process, port)
            connect = (
                "login",
                "--connect",
                f"tcp:127.0.0.1:{port}",
                "--kind",
                "sshkey",
            )
            # No key file: ed (not alice's) is refused, ec is taken.
            self.assertLoggedIn(self.keycard(*connect, "alice"), "alice")
            rsaPub = f"{self.keys['rsa']}.pub"
            self.assertLoggedIn(
                self.keycard(*connect, "--key-file", rsaPub, "alice"), "alice"
            )
            # ed.pub picks ed: the agent's ec key, which would log in, is
            # not tried.
            edPub = f"{self.keys['ed']}.pub"
            refused = self.keycard(*connect, "--key-file", edPub, "alice")
            self.assertEqual(refused.returncode, 1, refused.stdout + refused.stderr)
            self.assertIn("login refused", refused.stdout)
            self.assertLoggedIn(self.keycard(*connect, "carol"), "carol")
            self.assertLoggedIn(
                self.keycard(*connect, "--key-file", f"{user}-cert.pub", "carol"),
                "carol",
            )
            other = f"{self.agent.keygen('other')}.pub"
            lacking = self.keycard(*connect, "--key-file", other, "alice")
            self.assertOneLine(lacking, 2, "the SSH agent holds none of the given keys")
            noAgent = {k: v for k, v in ENV.items() if k != "SSH_AUTH_SOCK"}
            missing = self.keycard(*connect, "alice", env=noAgent)
            self.assertOneLine(missing, 2, "no SSH agent: SSH_AUTH_SOCK is not set")

        return ensureDeferred(go())

    def test_silentAgent(self) -> Deferred[None]:
        """
        An agent that takes the connection and never answers (one waiting
        for a confirmation nobody gives) stops the login after
        C{--timeout}, in one line.
        """
        silent = socket.socket(socket.AF_UNIX)
        self.addCleanup(silent.close)
        path = os.path.join(self.agent.socketDir, "silent.sock")
        silent.bind(path)
        silent.listen(1)
        env = {**self.agent.env, "SSH_AUTH_SOCK": path}

        async def go() -> None:
            result = self.keycard(
                "login", "--connect", "tcp:127.0.0.1:1", "--kind", "sshkey",
                "--timeout", "1", "alice", env=env,
            )  # fmt: skip
            self.assertOneLine(result, 2, "the SSH agent did not answer within 1 s")

        return ensureDeferred(go())

    def assertLoggedIn(
        self, result: subprocess.CompletedProcess[str], name: str
    ) -> None:
        out = result.stdout + result.stderr
        self.assertEqual(result.returncode, 0, out)
        self.assertIn(f"avatar id:  {name}", out)

    def assertOneLine(
        self, result: subprocess.CompletedProcess[str], code: int, text: str
    ) -> None:
        out = result.stdout + result.stderr
        self.assertEqual(result.returncode, code, out)
        self.assertEqual(len(out.strip().splitlines()), 1, out)
        self.assertIn(text, out)
