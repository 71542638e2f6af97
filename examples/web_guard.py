"""
A Klein application behind the bouncer: public and protected routes, a
login form for browsers, and tokens for programs, over HTTPS on loopback
with a development certificate made on the spot.

Run it with::

    python examples/web_guard.py          # serve until Ctrl-C
    python examples/web_guard.py --demo   # a scripted client, then exit

It prints the URLs and a curl line.  User ``alice``, password ``correct
horse``: the server keeps only a SCRAM verifier, which also checks the
passwords of Basic and of the form.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import treq
from klein import Klein
from treq.client import HTTPClient
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.ssl import Certificate
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.iweb import IRequest

from twisted_keycard import Bouncer, MemoryStore
from twisted_keycard.bouncer import TokenPolicy
from twisted_keycard.scram import SCRAMPasswordChecker, SCRAMVerifiers, Verifier
from twisted_keycard.service import makeDevCertificate
from twisted_keycard.web import (
    GuardOptions,
    KeycardGuard,
    KeycardHTTPClient,
    KeycardSite,
    LoginPage,
    LogoutPage,
    TokenPage,
    WebLogin,
    protect,
)

PASSWORD = "correct horse"  # noqa: S105 - the example's user


def makeApp(reactor: Any) -> tuple[Klein, KeycardGuard]:
    verifiers = SCRAMVerifiers({"alice": Verifier.fromPassword(PASSWORD)})
    bouncer = Bouncer(
        [verifiers, SCRAMPasswordChecker(verifiers)],
        MemoryStore(),
        clock=reactor,
        tokens=TokenPolicy(),
    )
    guard = KeycardGuard(
        bouncer, clock=reactor, options=GuardOptions(loginPath="/login")
    )
    app = Klein()

    @app.route("/")
    def index(request: IRequest) -> str:
        return "public: try /hello\n"

    @app.route("/hello")
    @protect(guard)
    def hello(request: IRequest, login: WebLogin) -> str:
        return f"hello, {login.avatarId} (logged in with {login.scheme})\n"

    @app.route("/token")
    def token(request: IRequest) -> TokenPage:
        return TokenPage(guard)

    @app.route("/login")
    def login(request: IRequest) -> LoginPage:
        return LoginPage(guard)

    @app.route("/logout")
    def logout(request: IRequest) -> LogoutPage:
        return LogoutPage(guard)

    return app, guard


async def demo(reactor: Any, base: str, trust: Path) -> None:
    """
    What a program does: log in with SCRAM (the password never crosses),
    keep the token, and use it.
    """
    agent = Agent(
        reactor,
        BrowserLikePolicyForHTTPS(trustRoot=Certificate.loadPEM(trust.read_bytes())),
        pool=HTTPConnectionPool(reactor, persistent=False),
    )
    client = KeycardHTTPClient(HTTPClient(agent), username="alice", password=PASSWORD)
    response = await client.get(base + "/hello")
    print("SCRAM:  ", (await treq.content(response)).decode().strip())
    grant = await client.fetchToken(base + "/token")
    print("token for", grant.avatarId, "keycard", grant.keycardId)
    response = await client.get(base + "/hello")
    print("Bearer: ", (await treq.content(response)).decode().strip())
    stranger = KeycardHTTPClient(HTTPClient(agent))
    response = await stranger.get(base + "/hello")
    await treq.content(response)
    print("no credentials:", response.code)


async def main(reactor: Any, *argv: str) -> None:
    directory = Path(tempfile.mkdtemp(prefix="web-guard-"))
    reactor.addSystemEventTrigger("before", "shutdown", shutil.rmtree, directory)
    pem, trust = directory / "tls" / "server.pem", directory / "trust.pem"
    makeDevCertificate("localhost", pem, trust)
    app, _ = makeApp(reactor)
    endpoint = serverFromString(reactor, f"ssl:0:interface=127.0.0.1:privateKey={pem}")
    port = await endpoint.listen(KeycardSite(app.resource()))
    base = f"https://localhost:{port.getHost().port}"
    print(f"serving {base}/hello (log in at {base}/login)")
    print(
        f"curl --cacert {trust} -u alice:'{PASSWORD}' -X POST {base}/token"
        "   # then: curl --cacert ... -H 'Authorization: Bearer TOKEN'"
        f" {base}/hello"
    )
    if "--demo" in argv:
        await demo(reactor, base, trust)
        await port.stopListening()
        return
    await Deferred()  # serve until Ctrl-C


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run a scripted client against the server, then exit",
    )
    return parser


if __name__ == "__main__":
    # --help and a mistyped option stop here, before anything is served.
    arguments().parse_args()
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, *sys.argv[1:])))
