"""
Attacks on the bouncer's side (issue 11, items 3, 4 and 5; issue 23,
findings 5 and 6), against a real C{twistd -n keycard-bouncer} with its
defaults (but for the limits a test names), from hostile clients in a
process of their own (L{tests._bouncerattacker}) on several 127.0.0.x
addresses.

Each test asserts that while the attack is in progress a legitimate login
from an unused address succeeds within a second, and that afterwards the
server is up, has grown less than 64 MiB, and logged no traceback.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from treq.client import HTTPClient
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from twisted_keycard import KeycardClientFactory, KeycardDenied
from twisted_keycard.keycard._keycard import IAnswerer
from twisted_keycard.passwords import PasswordAnswerer
from twisted_keycard.pb import KeycardLogin
from twisted_keycard.scram import SCRAMAnswerer
from twisted_keycard.sessions import connectSession

from ._procs import (
    ENV,
    ROOT,
    bouncer,
    freePort,
    keycard,
    scriptProcess,
    started,
    waitFor,
)

pytestmark = pytest.mark.integration

reactor: Any = _reactor
DATA = Path(__file__).resolve().parent / "data"
PASSWORD = "correct horse battery staple"
EXAMPLE = str(ROOT / "examples" / "brokered_session.py")
MiB = 1024 * 1024


#: Password hashes the service runs at once, by default.
class Attacker(ProcessProtocol):
    """
    A L{tests._bouncerattacker} process: its JSON events, and commands to it.
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.errors = b""
        self._buffer = b""
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        self.events.extend(json.loads(line) for line in lines if line.strip())

    def errReceived(self, data: bytes) -> None:
        self.errors += data

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)

    def event(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e["event"] == name), None)

    async def waitFor(self, name: str, timeout: float = 60.0) -> dict[str, Any]:
        await waitFor(
            lambda: self.event(name) is not None or self.ended.called,
            f"the attacker's {name!r}",
            timeout,
        )
        found = self.event(name)
        assert found is not None, (name, self.events, self.errors[-2000:])
        return found

    def command(self, line: str) -> None:
        assert self.transport is not None
        self.transport.write(line.encode() + b"\n")


class AttackTests(TestCase):
    timeout = 240

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        self.data = self.dir / "data"
        result = keycard("init", str(self.data), "--dev-cert", "localhost")
        self.assertEqual(result.returncode, 0, result.stderr)
        for name in ("alice", "bob"):
            result = keycard(
                "user", "add", "--data-dir", str(self.data), name, stdin=PASSWORD + "\n"
            )
            self.assertEqual(result.returncode, 0, result.stderr)
        self.htpasswd = self.dir / "htpasswd.txt"
        shutil.copy(DATA / "htpasswd.txt", self.htpasswd)
        self.trust = self.data / "tls" / "trust" / "ca.pem"
        self.loginTimes: list[float] = []

    # The server

    async def startBouncer(self, *options: str, tls: bool = False) -> None:
        self.port = freePort()
        pem = self.data / "tls" / "server.pem"
        listen = (
            f"ssl:{self.port}:interface=127.0.0.1:privateKey={pem}"
            if tls
            else f"tcp:{self.port}:interface=127.0.0.1"
        )
        self.tls = tls
        self.server = bouncer(self.data, listen, self.dir / "bouncer.log", *options)
        self.addCleanup(self.server.stop)
        await started(self.server, self.port)
        # Warm up (imports, first store access) before the baseline.
        await self.login(SCRAMAnswerer("bob", PASSWORD) if not tls else None, 199)
        self.baseline = self.rss()
        self.peak = self.baseline
        sampler = LoopingCall(self.sample)
        sampler.start(0.05)

        def stopSampling() -> None:
            if sampler.running:
                sampler.stop()

        self.addCleanup(stopSampling)

    def rss(self) -> int:
        """
        The server's resident set, in bytes, from C{/proc/PID/status}.
        """
        assert self.server.proc is not None
        status = Path(f"/proc/{self.server.proc.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024

    def sample(self) -> None:
        if self.server.proc is not None and self.server.proc.poll() is None:
            self.peak = max(self.peak, self.rss())

    async def assertServerWell(self, **figures: object) -> None:
        """
        Up, grown less than 64 MiB (at the peak and after), and no
        traceback in its log.  The figures are printed (C{pytest -s} shows
        them).
        """
        assert self.server.proc is not None
        await sleep(1.0)
        now = self.rss()
        print(
            f"\n{self.id()}: RSS {self.baseline / MiB:.1f} MiB,"
            f" +{(self.peak - self.baseline) / MiB:.1f} MiB at peak,"
            f" +{(now - self.baseline) / MiB:.1f} MiB after;",
            *(f"{k}={v}" for k, v in figures.items()),
        )
        self.assertIsNone(self.server.proc.poll(), "the bouncer died")
        growth = self.peak - self.baseline
        self.assertLess(growth, 64 * MiB, f"RSS grew by {growth / MiB:.1f} MiB")
        self.assertLess(now - self.baseline, 64 * MiB)
        log = self.server.output()
        self.assertNotIn("Traceback", log)
        self.assertNotIn("Unhandled", log)

    # Clients

    async def login(self, answerer: IAnswerer | None, source: int) -> float:
        """
        Log in from 127.0.0.C{source}, and return the seconds it took.
        """
        if answerer is None:
            answerer = PasswordAnswerer("sha512", "sha512-pw")
        start = time.monotonic()
        endpoint: Any = TCP4ClientEndpoint(
            reactor,
            "127.0.0.1",
            self.port,
            timeout=10,
            bindAddress=(f"127.0.0.{source}", 0),
        )
        if self.tls:
            trust = Certificate.loadPEM(self.trust.read_bytes())
            endpoint = wrapClientTLS(optionsForClientTLS("localhost", trust), endpoint)
        factory = KeycardClientFactory()
        await endpoint.connect(factory)
        try:
            await factory.login([answerer])
        finally:
            factory.disconnect()
        return time.monotonic() - start

    async def legitimateLogin(self, answerer: IAnswerer | None, source: int) -> float:
        """
        A real user's login while the attack goes on: it must succeed; its
        time is printed and kept for L{assertServerWell}'s figures, never
        bounded (a loaded machine makes any bound a flake).
        """
        took = await self.login(answerer, source)
        self.loginTimes.append(took)
        print(f"\n{self.id()}: a real login took {took:.3f} s")
        return took

    def attack(self, mode: str, *args: str) -> Attacker:
        attacker = Attacker()
        argv = [
            sys.executable,
            "-m",
            "tests._bouncerattacker",
            mode,
            "--port",
            str(self.port),
        ]
        if self.tls:
            argv += ["--tls", str(self.trust)]
        process = reactor.spawnProcess(
            attacker, sys.executable, [*argv, *args], env=ENV, path=str(ROOT)
        )

        def kill() -> Deferred[None] | None:
            if attacker.ended.called:
                return None
            process.signalProcess("KILL")
            return attacker.ended

        self.addCleanup(kill)
        return attacker

    async def during(
        self, attacker: Attacker, check: Callable[[], Any], seconds: float = 2.0
    ) -> dict[str, Any]:
        """
        Once the attack is under way, run C{check} (the legitimate login)
        after C{seconds}, then stop the attack and return its counts.
        """
        await attacker.waitFor("connected")
        await sleep(seconds)
        await check()
        attacker.command("stop")
        stopped = await attacker.waitFor("stopped")
        attacker.command("close")
        await attacker.ended
        return stopped

    # The attacks

    def test_pendingExhaustion(self) -> Deferred[None]:
        """
        Issue 11, item 3: SCRAM first messages, never answered, from 100
        addresses (two connections each, 20 messages on each: a connection
        that has not logged in may send 32).  Each connection holds at
        most 4 exchanges and the rest are refused at once; while the
        attacker holds its connections a real login gets in, and once they
        are closed their places are free again.
        """

        async def go() -> None:
            await self.startBouncer()
            flood = self.attack(
                "scram",
                "--first=10",
                "--addresses=100",
                "--connections=2",
                # Under the 32 messages a connection may send before login.
                "--outstanding=20",
                "--once",
            )
            await flood.waitFor("answered")
            stopped = await self.during(
                flood,
                lambda: self.legitimateLogin(SCRAMAnswerer("alice", PASSWORD), 250),
            )
            counts = stopped["counts"]
            self.assertLessEqual(counts.get("requesting", 0), 4 * 200)
            self.assertGreater(counts.get("requesting", 0), 0, counts)
            again = self.attack(
                "scram",
                "--first=10",
                "--addresses=100",
                "--outstanding=1",
                "--once",
            )
            await again.waitFor("answered")
            counts = (await self.during(again, lambda: sleep(0), 0))["counts"]
            self.assertEqual(counts.get("requesting", 0), 100, counts)
            await self.assertServerWell(login=self.loginTimes, counts=stopped["counts"])

        return ensureDeferred(go())

    def test_throttleRace(self) -> Deferred[None]:
        """
        Issue 11, item 4: with an account limit of 5, 60 SCRAM exchanges for
        one account started together from 10 addresses, the right password
        last; the 59 wrong ones answered together: at most 5 answers are
        checked (the account is reserved as each answer arrives); then the
        right one, which is denied.  (It is sent once the wrong ones have
        their answers: sent with them, it reached the bouncer among the
        first five in two soak runs, the connections being read in no set
        order, and was rightly taken as one of the account's five checks.)
        """

        async def go() -> None:
            await self.startBouncer("--throttle-account=5")
            burst = self.attack(
                "burst",
                "--first=10",
                "--addresses=10",
                "--connections=2",
                "--user=alice",
                f"--password={PASSWORD}",
                "--wrong=59",
            )
            await self.legitimateLogin(SCRAMAnswerer("bob", PASSWORD), 250)
            done = await burst.waitFor("done")
            await burst.ended
            counts = done["counts"]
            self.assertLessEqual(counts.get("answer: KeycardRefused", 0), 5, counts)
            self.assertNotIn("answer: authenticated", counts)
            self.assertFalse(done["rightAccepted"])
            with self.assertRaises(KeycardDenied):
                await self.login(SCRAMAnswerer("alice", PASSWORD), 251)
            await self.assertServerWell(login=self.loginTimes, counts=counts)

        return ensureDeferred(go())

    def test_unansweredNoLockout(self) -> Deferred[None]:
        """
        Issue 23, finding 6: 100 SCRAM first messages for one account from
        4 addresses, never answered, with the service's default throttle
        (100 failures per account an hour): a real login of that account
        from a fresh address works while they are held, and again once
        their connections closed them.
        """

        async def go() -> None:
            await self.startBouncer("--max-pending-per-connection=5")
            flood = self.attack(
                "scram",
                "--first=20",
                "--addresses=4",
                "--connections=5",
                "--outstanding=5",
                "--once",
                "--user=alice",
            )
            answered = await flood.waitFor("answered")
            counts = answered["counts"]
            self.assertEqual(counts, {"requesting": 100}, counts)
            await self.legitimateLogin(SCRAMAnswerer("alice", PASSWORD), 250)
            flood.command("close")
            await flood.ended
            await sleep(0.5)
            await self.legitimateLogin(SCRAMAnswerer("alice", PASSWORD), 251)
            log = self.server.output()
            self.assertNotIn("throttled a login for alice", log)
            await self.assertServerWell(login=self.loginTimes, counts=counts)

        return ensureDeferred(go())

    def test_passwordThrottleRace(self) -> Deferred[None]:
        """
        Issue 11, item 4, password files: 60 password logins from one
        address at once, with an address limit of 30: at most 30 are
        checked.
        """

        async def go() -> None:
            await self.startBouncer(
                f"--auth=htpasswd:{self.htpasswd}", "--hash-queue=64", tls=True
            )
            burst = self.attack(
                "password",
                "--first=10",
                "--connections=15",
                "--outstanding=4",
                "--once",
            )
            await burst.waitFor("connected")
            await self.legitimateLogin(None, 250)
            answered = await burst.waitFor("answered")
            counts = answered["counts"]
            burst.command("close")
            await burst.ended
            self.assertEqual(sum(counts.values()), 60, counts)
            self.assertLessEqual(counts.get("KeycardRefused", 0), 30, counts)
            await self.assertServerWell(login=self.loginTimes, counts=counts)

        return ensureDeferred(go())

    def test_hashFlood(self) -> Deferred[None]:
        """
        Issue 11, item 5: password logins for unknown users, 60 at a time on
        one connection, then 32 at a time from 4 addresses (two connections
        each), each answered by another: the hashes run a few at a time, the
        rest are refused at once, and a real login is checked within a
        second.
        """

        async def go() -> None:
            await self.startBouncer(f"--auth=htpasswd:{self.htpasswd}", tls=True)
            # One connection: 4 are checked at most, the rest denied at once.
            # Several: the hash pool checks a few at a time, denies the rest.
            for args, outcome in [
                (
                    ("--first=10", "--connections=1", "--outstanding=30"),
                    "denied: too many logins in progress; try again later",
                ),
                (
                    (
                        "--first=20",
                        "--addresses=4",
                        "--connections=2",
                        "--outstanding=4",
                    ),
                    "KeycardRefused",
                ),
            ]:
                flood = self.attack("password", *args)
                stopped = await self.during(
                    flood, lambda: self.legitimateLogin(None, 250)
                )
                self.assertGreater(
                    stopped["counts"].get(outcome, 0), 0, stopped["counts"]
                )
            await self.assertServerWell(login=self.loginTimes, counts=stopped["counts"])

        return ensureDeferred(go())

    # Fair shares (issue 23, finding 5)

    def chatService(self) -> int:
        """
        Start the example's service C{chat}, logged in to the bouncer; the
        bouncer must take C{--services chat}.

        @return: its port.
        """
        result = keycard(
            "user", "add", "--data-dir", str(self.data), "chat", stdin=PASSWORD + "\n"
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        port = freePort()
        log = self.dir / "service.log"
        args = [EXAMPLE, "service", f"tcp:127.0.0.1:{self.port}", str(port), "chat"]
        scriptProcess(self, args, log, PASSWORD)
        self.serviceLog = log
        return port

    async def flooded(self, flood: Attacker) -> dict[str, Any]:
        """
        Wait for the flood to end, and return its C{done} event.
        """
        await waitFor(
            lambda: flood.event("done") or flood.event("error") or flood.ended.called,
            "the flood",
            200,
        )
        done = flood.event("done")
        assert done is not None, (flood.events, flood.errors[-2000:])
        return done

    async def session(self, name: str, servicePort: int, source: int) -> str:
        """
        Log C{name} in from 127.0.0.C{source}, open a brokered session with
        the service, and return the name the service knows the client by.
        """
        factory = KeycardClientFactory()
        endpoint = TCP4ClientEndpoint(
            reactor, "127.0.0.1", self.port, bindAddress=(f"127.0.0.{source}", 0)
        )
        await endpoint.connect(factory)
        try:
            login = await factory.loginWithKeycard([SCRAMAnswerer(name, PASSWORD)])
            session = await connectSession(
                login, TCP4ClientEndpoint(reactor, "127.0.0.1", servicePort), "chat"
            )
            try:
                whoami: str = await session.perspective.callRemote("whoami")
            finally:
                session.end()
        finally:
            factory.disconnect()
        return whoami

    def test_ticketFlood(self) -> Deferred[None]:
        """
        Issue 23, finding 5: one account logged in 660 times asks 16
        tickets on each keycard at once: 10,560, more than the 10,000
        tickets that can wait (with a ticket timeout of 30 s, so that none
        expires during the flood).  Every request is granted, the newest
        pushing out that account's oldest, and a real second user then
        gets a ticket and opens a session with the service.
        """

        async def go() -> None:
            await self.startBouncer("--services", "chat", "--ticket-timeout=30")
            servicePort = self.chatService()
            await waitFor(
                lambda: "listening on" in self.serviceLog.read_text(), "the service"
            )
            flood = self.attack(
                "tickets",
                "--first=30",
                "--addresses=10",
                "--connections=66",
                "--user=alice",
                f"--password={PASSWORD}",
                "--tickets=16",
            )
            done = await self.flooded(flood)
            counts = done["counts"]
            print(f"\n{self.id()}: the flood took {done['seconds']:.1f} s: {counts}")
            start = time.monotonic()
            self.assertEqual(await self.session("bob", servicePort, 250), "bob")
            self.loginTimes.append(time.monotonic() - start)
            self.assertEqual(counts["logged in"], 660, counts)
            self.assertEqual(counts.get("granted"), 660 * 16, counts)
            pushed = self.server.output().count("pushed out by a newer ticket")
            self.assertGreaterEqual(pushed, 660 * 16 - 256, pushed)
            flood.command("close")
            await flood.ended
            await self.assertServerWell(
                login=self.loginTimes, counts=counts, pushed=pushed
            )

        return ensureDeferred(go())

    def test_sessionFlood(self) -> Deferred[None]:
        """
        One account opens 130 brokered sessions with a real service (the
        example's C{chat}) on one keycard, past its share there (100):
        each session past it ends that account's oldest, while a second
        user's session, opened first, keeps working throughout.
        """

        async def go() -> None:
            await self.startBouncer("--services", "chat")
            servicePort = self.chatService()
            await waitFor(
                lambda: "listening on" in self.serviceLog.read_text(), "the service"
            )
            service = TCP4ClientEndpoint(reactor, "127.0.0.1", servicePort)

            async def loggedIn(name: str, source: int) -> KeycardLogin:
                factory = KeycardClientFactory()
                endpoint = TCP4ClientEndpoint(
                    reactor,
                    "127.0.0.1",
                    self.port,
                    bindAddress=(f"127.0.0.{source}", 0),
                )
                await endpoint.connect(factory)
                self.addCleanup(factory.disconnect)
                return await factory.loginWithKeycard([SCRAMAnswerer(name, PASSWORD)])

            bob = await connectSession(await loggedIn("bob", 250), service, "chat")
            self.addCleanup(bob.end)
            alice = await loggedIn("alice", 251)
            sessions = []
            for _ in range(130):
                session = await connectSession(alice, service, "chat")
                self.addCleanup(session.end)
                sessions.append(session)
            await waitFor(
                lambda: all(s.broker.disconnected for s in sessions[:30]),
                "alice's 30 oldest sessions to end",
            )
            self.assertFalse(any(s.broker.disconnected for s in sessions[30:]))
            self.assertEqual(await bob.perspective.callRemote("whoami"), "bob")
            self.assertEqual(
                await sessions[-1].perspective.callRemote("whoami"), "alice"
            )
            self.assertFalse(bob.broker.disconnected)
            await self.assertServerWell()

        return ensureDeferred(go())

    async def formSession(self, client: HTTPClient, base: str, name: str) -> str:
        """
        Log C{name} in with the HTTP face's login form.

        @return: the session cookie's value.
        """
        page = await client.get(base + "/login")
        match = re.search(r'name="csrf" value="([^"]+)"', (await page.text()))
        assert match is not None
        csrf = match.group(1)
        headers: dict[bytes | str, bytes | str] = {
            "Cookie": f"__Host-keycard-login={csrf}",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        reply = await client.post(
            base + "/login",
            data={"username": name, "password": PASSWORD, "csrf": csrf},
            headers=headers,
            allow_redirects=False,
        )
        await reply.content()
        self.assertEqual(reply.code, 303)
        for header in reply.headers.getRawHeaders("set-cookie", []):
            if header.startswith("__Host-keycard="):
                return str(header.split(";")[0].split("=", 1)[1])
        raise AssertionError("no session cookie")

    async def whoami(self, client: HTTPClient, base: str, cookie: str) -> int:
        headers: dict[bytes | str, bytes | str] = {"Cookie": f"__Host-keycard={cookie}"}
        reply = await client.get(base + "/whoami", headers=headers)
        await reply.content()
        return int(reply.code)

    def test_formFlood(self) -> Deferred[None]:
        """
        Issue 23, finding 5, the web face: one user's 300 form logins, three
        times its share of sessions (100), push out only its own oldest
        sessions: a real second user's session still works afterwards, and
        so does the flood's newest, while its first is gone.
        """

        async def go() -> None:
            httpPort = freePort()
            pem = self.data / "tls" / "server.pem"
            await self.startBouncer(
                "--http", f"ssl:{httpPort}:interface=127.0.0.1:privateKey={pem}"
            )
            base = f"https://localhost:{httpPort}"
            await waitFor(
                lambda: f"starting on {httpPort}" in self.server.output(),
                "the HTTP face",
            )
            trust = Certificate.loadPEM(self.trust.read_bytes())
            client = HTTPClient(
                Agent(
                    reactor,
                    _Trust(trust),
                    pool=HTTPConnectionPool(reactor, persistent=False),
                )
            )
            bob = await self.formSession(client, base, "bob")
            first = await self.formSession(client, base, "alice")
            flood = self.attack(
                "forms",
                f"--url={base}",
                "--user=alice",
                f"--password={PASSWORD}",
                "--logins=300",
                "--outstanding=4",
                f"--tls={self.trust}",
            )
            done = await self.flooded(flood)
            counts = done["counts"]
            print(f"\n{self.id()}: the flood took {done['seconds']:.1f} s: {counts}")
            self.assertEqual(counts, {"303": 300}, counts)
            last = await self.formSession(client, base, "alice")
            self.assertEqual(await self.whoami(client, base, bob), 200)
            self.assertEqual(await self.whoami(client, base, last), 200)
            self.assertEqual(await self.whoami(client, base, first), 401)
            flood.command("close")
            await flood.ended
            await self.assertServerWell(counts=counts)

        return ensureDeferred(go())


@implementer(IPolicyForHTTPS)
class _Trust:
    """
    HTTPS to localhost, trusting the test's certificate authority.
    """

    def __init__(self, trust: Certificate) -> None:
        self.trust = trust

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return optionsForClientTLS("localhost", trustRoot=self.trust)


async def sleep(seconds: float) -> None:
    d: Deferred[None] = Deferred()
    reactor.callLater(seconds, d.callback, None)
    await d
