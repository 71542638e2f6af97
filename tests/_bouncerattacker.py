"""
A hostile client for the attack tests, in a process of its own so that the
test's legitimate login does not share its reactor:

    python -m tests._bouncerattacker MODE --port PORT [options]

Modes:

  - C{scram}: SCRAM first messages for unknown users, never answered;
  - C{password}: password keycards for unknown users (over TLS);
  - C{burst}: the throttle race: C{--wrong} SCRAM exchanges for C{--user}
    with a wrong password and one with the right one, started together;
    the wrong ones answered together, then (once they all have their
    answers) the right one;
  - C{tickets}: one account filling the bouncer's tickets: C{--user} logs
    in on every connection (C{--addresses} times C{--connections}), then
    asks C{--tickets} tickets for C{--service} on each, all at once;
  - C{forms}: one account filling the web guard's sessions: C{--logins}
    form logins of C{--user} at the HTTP face C{--url}, C{--outstanding}
    at a time.
  - C{stock}: PB's own MD5 login (a root with C{stockLogin=True}):
    C{--wrong} logins for C{--user} with wrong passwords, spread over the
    connections and all started at once, then one with the right password.

C{scram} and C{password} keep C{--outstanding} calls in flight on every
connection (a new one as each answer comes, unless C{--once}) until C{stop}
is read on standard input.  Events are JSON lines on standard output:
C{connected}, C{answered} (with C{--once}, when every call has its answer),
then C{stopped} (with the counts of each outcome); C{close} on standard
input closes the connections and exits.  C{burst} and C{stock} print
C{done} and exit.  C{tickets} and C{forms} print C{done} (with the counts
and the seconds the flood took), and hold their keycards until C{close}.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from treq.client import HTTPClient
from twisted.internet import defer, endpoints, ssl, stdio, task
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from twisted.spread import pb
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from twisted_keycard import KeycardClientFactory
from twisted_keycard.keycard import Keycard, Step
from twisted_keycard.passwords import PasswordKeycard
from twisted_keycard.scram import SCRAMAnswerer, SCRAMKeycard
from twisted_keycard.sessions import requestTicket

#: Connections opened at once.
BATCH = 25


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


#: The classes of denials (L{KeycardDenied} and its subclasses).
DENIALS = ("KeycardDenied", "QuotaExceeded", "Throttled")


def outcome(result: object) -> str:
    """
    A short name for the answer to one C{login} call.
    """
    if isinstance(result, Failure):
        # A failure copied over PB names its class as bytes.
        kind: Any = result.type
        name = kind.decode() if isinstance(kind, bytes) else kind.__name__
        name = name.rsplit(".", 1)[-1]
        if name in DENIALS:
            return f"denied: {result.getErrorMessage()}"
        return name
    if isinstance(result, list | tuple) and result:
        tag = result[0]
        if tag == b"challenge":
            return "requesting"
        if tag == b"logged_in":
            return "authenticated"
    return "other"


#: The kind of a SCRAM first message.
SCRAM = SCRAMKeycard.kind.encode()


class Attack:
    def __init__(self, reactor: Any, options: argparse.Namespace) -> None:
        self.reactor = reactor
        self.options = options
        self.counts: Counter[str] = Counter()
        self.roots: list[pb.RemoteReference] = []
        self.factories: list[KeycardClientFactory] = []
        self.running = True
        self.inFlight = 0
        self.quiet: defer.Deferred[None] | None = None
        self.finished: defer.Deferred[None] = defer.Deferred()

    def endpoint(self, source: str) -> Any:
        options = self.options
        tcp = endpoints.TCP4ClientEndpoint(
            self.reactor, "127.0.0.1", options.port, timeout=10, bindAddress=(source, 0)
        )
        if options.tls is None:
            return tcp
        trust = ssl.Certificate.loadPEM(Path(options.tls).read_bytes())
        return endpoints.wrapClientTLS(
            ssl.optionsForClientTLS("localhost", trustRoot=trust), tcp
        )

    async def connect(self) -> None:
        sources = [f"127.0.0.{n}" for n in self.sourceNumbers()]

        async def one(source: str) -> None:
            factory = KeycardClientFactory()
            try:
                await self.endpoint(source).connect(factory)
                self.roots.append(await factory.getRootObject())
                self.factories.append(factory)
            except Exception as e:
                self.counts[f"connect: {type(e).__name__}"] += 1

        wanted = [s for s in sources for _ in range(self.options.connections)]
        # In batches: the listener's backlog is small, and a refused SYN
        # is retried only a second later.
        for start in range(0, len(wanted), BATCH):
            await defer.gatherResults(
                [
                    defer.Deferred.fromCoroutine(one(source))
                    for source in wanted[start : start + BATCH]
                ]
            )

    def sourceNumbers(self) -> range:
        first = self.options.first
        return range(first, first + self.options.addresses)

    def keycard(self) -> Keycard:
        name = f"nobody-{secrets.token_hex(4)}"
        if self.options.mode == "password":
            return PasswordKeycard(username=name, password=secrets.token_hex(8))
        return SCRAMAnswerer(self.options.user or name, "guess").start()

    def send(self, root: pb.RemoteReference) -> None:
        if not self.running or root.broker.disconnected:
            return
        self.inFlight += 1
        keycard = self.keycard()
        message = keycard.message(Step.FIRST)
        d = root.callRemote("login", keycard.kind.encode(), 0, None, *message)
        d.addBoth(self.answered, root)

    def answered(self, result: object, root: pb.RemoteReference) -> None:
        self.inFlight -= 1
        self.counts[outcome(result)] += 1
        if self.running and not self.options.once:
            self.send(root)
        elif not self.inFlight and self.running:
            emit("answered", counts=self.counts)
        elif not self.inFlight and self.quiet is not None:
            quiet = self.quiet
            self.quiet = None
            quiet.callback(None)

    async def flood(self) -> None:
        await self.connect()
        for root in self.roots:
            for _ in range(self.options.outstanding):
                self.send(root)
        emit("connected", connections=len(self.roots), counts=self.counts)

    async def stop(self) -> None:
        self.running = False
        if self.inFlight:
            self.quiet = defer.Deferred()
            timeout = self.reactor.callLater(10, self.quiet.callback, None)
            await self.quiet
            if timeout.active():
                timeout.cancel()
        lost = sum(1 for root in self.roots if root.broker.disconnected)
        emit("stopped", counts=self.counts, lost=lost, inFlight=self.inFlight)

    def close(self) -> None:
        for factory in self.factories:
            factory.disconnect()
        emit("closed")
        if not self.finished.called:
            self.reactor.callLater(0.5, self.finished.callback, None)

    async def burst(self) -> None:
        """
        Start C{--wrong} exchanges and then the right one, all before any
        answer, spread over the connections; then answer every wrong one's
        challenge at once, and the right one's once they all have their
        answers.  (Sent in the same burst, the right answer may reach the
        bouncer before the wrong ones, the connections being read in no
        set order, and be one of the checks the account is allowed: the
        race is among the wrong answers.)
        """
        options = self.options
        await self.connect()
        answerers = [SCRAMAnswerer(options.user, "wrong") for _ in range(options.wrong)]
        answerers.append(SCRAMAnswerer(options.user, options.password))
        keycards = [a.start() for a in answerers]
        started = [
            self.roots[i % len(self.roots)].callRemote(
                "login", SCRAM, 0, None, *k.message(Step.FIRST)
            )
            for i, k in enumerate(keycards)
        ]
        firsts = await defer.DeferredList(started, consumeErrors=True)
        right = len(answerers) - 1

        def answer(i: int, result: Any) -> defer.Deferred[Any]:
            keycards[i].takeMessage(Step.CHALLENGE, result[2:])
            keycard = answerers[i].answer(keycards[i])
            root = self.roots[i % len(self.roots)]
            sent: defer.Deferred[Any] = root.callRemote(
                "answer", result[1], *keycard.message(Step.ANSWER)
            )
            return sent

        challenged = []
        for i, (ok, result) in enumerate(firsts):
            self.counts[f"first: {outcome(result)}"] += 1
            if ok and result[0] == b"challenge":
                challenged.append((i, result))
        answers = [(i, answer(i, result)) for i, result in challenged if i != right]
        results = await defer.DeferredList([d for _, d in answers], consumeErrors=True)
        for i, result in challenged:
            if i == right:
                answers.append((i, answer(i, result)))
                results += await defer.DeferredList(
                    [answers[-1][1]], consumeErrors=True
                )
        rightAccepted = False
        for (i, _), (_, result) in zip(answers, results, strict=True):
            name = outcome(result)
            self.counts[f"answer: {name}"] += 1
            rightAccepted = rightAccepted or (i == right and name == "authenticated")
        emit("done", counts=self.counts, rightAccepted=rightAccepted)

    async def tickets(self) -> None:
        """
        Log in C{--user} on every connection, then ask C{--tickets} tickets
        for C{--service} on each keycard, all at once.
        """
        options = self.options
        sources = [f"127.0.0.{n}" for n in self.sourceNumbers()]
        total = len(sources) * options.connections
        logins: list[Any] = []

        async def one(source: str) -> None:
            factory = KeycardClientFactory()
            try:
                await self.endpoint(source).connect(factory)
                self.factories.append(factory)
                answerer = SCRAMAnswerer(options.user, options.password)
                logins.append(await factory.loginWithKeycard([answerer]))
            except Exception as e:
                self.counts[f"login: {type(e).__name__}"] += 1

        # Interleaved, so that no address has many connections logging in.
        wanted = [sources[i % len(sources)] for i in range(total)]
        for start in range(0, total, BATCH):
            await defer.gatherResults(
                [
                    defer.Deferred.fromCoroutine(one(source))
                    for source in wanted[start : start + BATCH]
                ]
            )
        self.counts["logged in"] = len(logins)
        began = time.monotonic()
        asked = [
            requestTicket(login, options.service)
            for login in logins
            for _ in range(options.tickets)
        ]
        for ok, result in await defer.DeferredList(asked, consumeErrors=True):
            self.counts["granted" if ok else f"ticket: {outcome(result)}"] += 1
        emit("done", counts=self.counts, seconds=time.monotonic() - began)

    async def forms(self) -> None:
        """
        Log in C{--user} with the login form C{--logins} times,
        C{--outstanding} at a time, keeping every session cookie.
        """
        options = self.options
        trust = ssl.Certificate.loadPEM(Path(options.tls).read_bytes())
        pool = HTTPConnectionPool(self.reactor)
        pool.maxPersistentPerHost = options.outstanding
        client = HTTPClient(Agent(self.reactor, _Trust(trust), pool=pool))
        page = await client.get(options.url + "/login")
        body = (await page.content()).decode()
        match = re.search(r'name="csrf" value="([^"]+)"', body)
        assert match is not None, body
        csrf = match.group(1)
        headers: dict[bytes | str, bytes | str] = {
            "Cookie": f"__Host-keycard-login={csrf}",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        form = {
            "username": options.user,
            "password": options.password,
            "csrf": csrf,
            "next": "/whoami",
        }
        began = time.monotonic()
        left = iter(range(options.logins))

        async def worker() -> None:
            for _ in left:
                reply = await client.post(
                    options.url + "/login",
                    data=form,
                    headers=headers,
                    allow_redirects=False,
                )
                await reply.content()
                self.counts[str(reply.code)] += 1

        await defer.gatherResults(
            [defer.Deferred.fromCoroutine(worker()) for _ in range(options.outstanding)]
        )
        emit("done", counts=self.counts, seconds=time.monotonic() - began)

    async def stockLogin(self, root: pb.RemoteReference, password: str) -> str:
        """
        One stock PB login as C{pb.PBClientFactory.login} makes it: the
        challenge, then the MD5 response.

        @return: its outcome (see L{outcome}).
        """
        try:
            challenge, challenger = await root.callRemote("login", self.options.user)
            response = pb.respond(challenge, password.encode("utf-8"))
            perspective = await challenger.callRemote("respond", response, None)
        except pb.RemoteError as e:
            # Raised by awaiting a failure copied over PB.
            kind = e.remoteType
            name = (kind.decode() if isinstance(kind, bytes) else str(kind)).rsplit(
                ".", 1
            )[-1]
            return f"denied: {e}" if name in DENIALS else name
        except Exception:
            return outcome(Failure())
        return (
            "authenticated" if isinstance(perspective, pb.RemoteReference) else "other"
        )

    async def stock(self) -> None:
        """
        Start C{--wrong} stock logins at once, spread over the connections,
        then the right one once they have ended, from the first address.
        """
        options = self.options
        await self.connect()
        start = time.monotonic()
        results = await defer.gatherResults(
            [
                defer.Deferred.fromCoroutine(
                    self.stockLogin(self.roots[i % len(self.roots)], f"wrong{i}")
                )
                for i in range(options.wrong)
            ]
        )
        took = time.monotonic() - start
        self.counts.update(results)
        # On a connection of its own: the server drops one that sent many
        # messages without logging in.
        factory = KeycardClientFactory()
        await self.endpoint(f"127.0.0.{options.first}").connect(factory)
        self.factories.append(factory)
        root = await factory.getRootObject()
        right = await self.stockLogin(root, options.password)
        emit(
            "done",
            counts=self.counts,
            seconds=took,
            right=right,
            rightAccepted=right == "authenticated",
        )


@implementer(IPolicyForHTTPS)
class _Trust:
    """
    HTTPS to localhost, trusting the test's certificate authority.
    """

    def __init__(self, trust: ssl.Certificate) -> None:
        self.trust = trust

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return ssl.optionsForClientTLS("localhost", trustRoot=self.trust)


class Commands(LineReceiver):
    delimiter = b"\n"

    def __init__(self, attack: Attack) -> None:
        self.attack = attack

    def lineReceived(self, line: bytes) -> None:
        command = line.strip().decode()
        if command == "stop":
            defer.Deferred.fromCoroutine(self.attack.stop())
        elif command == "close":
            self.attack.close()

    def connectionLost(self, reason: object = None) -> None:
        self.attack.close()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "mode", choices=["scram", "password", "burst", "tickets", "forms", "stock"]
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls", help="the trust root (CA certificate PEM)")
    parser.add_argument("--first", type=int, default=10, help="first 127.0.0.x")
    parser.add_argument("--addresses", type=int, default=1)
    parser.add_argument("--connections", type=int, default=1, help="per address")
    parser.add_argument("--outstanding", type=int, default=100, help="per connection")
    parser.add_argument("--once", action="store_true", help="send, do not resend")
    parser.add_argument("--user")
    parser.add_argument("--password", default="")
    parser.add_argument("--wrong", type=int, default=40)
    parser.add_argument("--service", default="chat")
    parser.add_argument("--tickets", type=int, default=16, help="per keycard")
    parser.add_argument("--url", help="the HTTP face, for forms")
    parser.add_argument("--logins", type=int, default=100)
    return parser.parse_args(argv)


def main(reactor: Any, argv: list[str]) -> defer.Deferred[None]:
    attack = Attack(reactor, parse(argv))
    if attack.options.mode == "burst":
        return defer.Deferred.fromCoroutine(attack.burst())
    if attack.options.mode == "stock":
        return defer.Deferred.fromCoroutine(attack.stock())
    stdio.StandardIO(Commands(attack))
    if attack.options.mode in ("tickets", "forms"):
        flood = attack.tickets if attack.options.mode == "tickets" else attack.forms

        def broke(failure: Failure) -> None:
            emit("error", error=failure.getErrorMessage())

        defer.Deferred.fromCoroutine(flood()).addErrback(broke)
        return attack.finished

    def failed(failure: Failure) -> None:
        emit("error", error=failure.getErrorMessage())
        attack.close()

    defer.Deferred.fromCoroutine(attack.flood()).addErrback(failed)
    return attack.finished


if __name__ == "__main__":
    run: Callable[..., None] = task.react
    run(main, (sys.argv[1:],))
