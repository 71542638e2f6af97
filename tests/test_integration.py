"""
Integration tests: SCRAM keycards over real loopback TCP, and the example
run as a user runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.cred.portal import Portal
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.utils import getProcessOutputAndValue
from twisted.spread import pb
from twisted.trial.unittest import TestCase

from twisted_keycard import (
    Bouncer,
    KeycardClientFactory,
    KeycardRefused,
    KeycardRoot,
    KeycardServerFactory,
    MemoryStore,
)
from twisted_keycard.scram import SCRAMAnswerer, SCRAMVerifiers, Verifier

from ._realm import AvatarRealm

reactor: Any = _reactor
ROOT = Path(__file__).resolve().parent.parent

# Slow: loopback TCP and the example as a process.
pytestmark = pytest.mark.integration


class LoopbackTests(TestCase):
    """
    A bouncer and clients on real loopback sockets, with the real reactor.
    """

    async def startServer(self, duration: float = 3600.0) -> int:
        self.realm = AvatarRealm()
        verifiers = SCRAMVerifiers({"alice": Verifier.fromPassword("s3cret pass")})
        self.bouncer = Bouncer(
            [verifiers], MemoryStore(), clock=reactor, duration=duration
        )
        self.root = KeycardRoot(self.bouncer, Portal(self.realm), "loopback")
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            KeycardServerFactory(self.root)
        )
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    async def connect(self, portNumber: int) -> KeycardClientFactory:
        factory = KeycardClientFactory()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", portNumber)
        broker: Any = await endpoint.connect(factory)
        self.addCleanup(broker.transport.loseConnection)
        return factory

    def test_loginOverTCP(self) -> Deferred[None]:
        async def go() -> None:
            factory = await self.connect(await self.startServer())
            login = await factory.loginWithKeycard(
                [SCRAMAnswerer("alice", "s3cret pass")]
            )
            self.assertEqual(await login.perspective.callRemote("whoami"), "alice")
            self.assertEqual(login.keycard.avatarId, "alice")
            self.assertEqual(self.root.keycardIds(), [login.keycard.id])
            # The requester recorded the peer's address; it is not sent back.
            assert login.keycard.id is not None
            self.assertEqual(self.bouncer.held[login.keycard.id].address, "127.0.0.1")
            self.assertIsNone(login.keycard.address)

        return ensureDeferred(go())

    def test_wrongPasswordOverTCP(self) -> Deferred[None]:
        async def go() -> None:
            factory = await self.connect(await self.startServer())
            with self.assertRaises(KeycardRefused):
                await factory.login([SCRAMAnswerer("alice", "wrong")])
            with self.assertRaises(KeycardRefused):
                await factory.login([SCRAMAnswerer("nobody", "wrong")])

        return ensureDeferred(go())

    def test_expiryDropsClientOverTCP(self) -> Deferred[None]:
        """
        When the bouncer expires a keycard, the client's connection is
        closed and its perspective stops working.
        """

        async def go() -> None:
            factory = await self.connect(await self.startServer())
            login = await factory.loginWithKeycard(
                [SCRAMAnswerer("alice", "s3cret pass")]
            )
            lost: Deferred[None] = Deferred()
            login.perspective.notifyOnDisconnect(lambda ref: lost.callback(None))
            assert login.keycard.id is not None
            await self.bouncer.expireKeycardIds([login.keycard.id])
            await lost
            with self.assertRaises(pb.DeadReferenceError):
                await login.perspective.callRemote("whoami")
            self.assertEqual(self.realm.loggedOut, ["alice"])

        return ensureDeferred(go())


class ExampleTests(TestCase):
    """
    The example in examples/ runs as is.
    """

    def test_help(self) -> None:
        """
        Every example answers C{--help} with its usage and exits, and
        refuses an argument it does not take, before doing anything: they
        started serving instead (issue 27).
        """

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            # The deadline fails an example that serves instead.
            return subprocess.run(
                [sys.executable, *args],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                cwd=ROOT,
                timeout=30,
                check=False,
            )

        examples = sorted((ROOT / "examples").glob("*.py"))
        self.assertEqual(len(examples), 4, examples)
        for example in examples:
            done = run(str(example), "--help")
            self.assertEqual((done.returncode, done.stderr), (0, ""), example)
            self.assertTrue(done.stdout.startswith(f"usage: {example.name}"))
            self.assertIn("Run it with", done.stdout)
            done = run(str(example), "--hlep")
            self.assertEqual((done.returncode, done.stdout), (2, ""), example)
            self.assertIn("unrecognized arguments: --hlep", done.stderr)
        done = run(str(ROOT / "examples" / "brokered_session.py"), "client", "--help")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("BOUNCER SERVICE NAME SERVICE_NAME", done.stdout)

    def test_seatQueueExample(self) -> Deferred[None]:
        """
        examples/seat_queue.py runs as is: its clients keep their order
        across the bouncer's restart, and the frozen holder's seat goes to
        the head of the queue.
        """

        async def go() -> None:
            out, err, code = await getProcessOutputAndValue(
                sys.executable,
                [str(ROOT / "examples" / "seat_queue.py")],
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                path=str(ROOT),
            )
            text = out.decode()
            self.assertEqual(code, 0, text + err.decode())
            for line in [
                "[u2] waiting for a seat in pool 'licenses': place 1 of 1",
                "[u3] waiting for a seat in pool 'licenses': place 2 of 2",
                "[u3] waiting for a seat in pool 'licenses': place 1 of ",
                "no answer to 3 heartbeats in 3 s",
                "the frozen holder's seat went to u3, the head",
                "done: the order was kept across the restart and the freeze",
            ]:
                self.assertIn(line, text)
            self.assertLess(text.index("[u2] seated"), text.index("[u3] seated"))

        return ensureDeferred(go())

    def test_example(self) -> Deferred[None]:
        async def go() -> None:
            out, err, code = await getProcessOutputAndValue(
                sys.executable,
                [str(ROOT / "examples" / "scram_login.py")],
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                path=str(ROOT),
            )
            self.assertEqual(code, 0, err.decode())
            text = out.decode()
            self.assertIn("avatar id:  alice", text)
            self.assertIn("keycard id: ", text)
            self.assertIn("expires:    ", text)
            self.assertIn("hello, alice", text)

        return ensureDeferred(go())
