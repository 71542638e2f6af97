"""
A bouncer embedded in a PB server, and a client logging in to it with
SCRAM-SHA-256, in one process over real loopback TCP.

Run it with::

    python examples/scram_login.py

The password never leaves the client, the server keeps only a SCRAM
verifier, and the client checks the server's signature.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from twisted.cred.portal import IRealm, Portal
from twisted.internet import task
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IReactorCore, IReactorTCP, IReactorTime
from twisted.spread import pb
from zope.interface import implementer

from twisted_keycard import (
    Bouncer,
    KeycardClientFactory,
    KeycardRoot,
    KeycardServerFactory,
    MemoryStore,
)
from twisted_keycard.scram import SCRAMAnswerer, SCRAMVerifiers, Verifier


class Chatter(pb.Avatar):
    """
    The application's avatar: what a logged-in client may do.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def perspective_hello(self) -> str:
        return f"hello, {self.name}"


@implementer(IRealm)
class ChatRealm:
    def requestAvatar(
        self, avatarId: Any, mind: object, *interfaces: Any
    ) -> tuple[Any, Chatter, Callable[[], None]]:
        return pb.IPerspective, Chatter(avatarId), lambda: None


async def main(reactor: Any) -> None:
    # The server keeps a verifier, never the password.
    verifiers = SCRAMVerifiers({"alice": Verifier.fromPassword("correct horse")})
    bouncer = Bouncer([verifiers], MemoryStore(), clock=reactor, duration=3600)
    root = KeycardRoot(bouncer, Portal(ChatRealm()), requesterName="chat-server")
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        KeycardServerFactory(root)
    )
    portNumber = port.getHost().port

    factory = KeycardClientFactory()
    await TCP4ClientEndpoint(reactor, "127.0.0.1", portNumber).connect(factory)
    login = await factory.loginWithKeycard([SCRAMAnswerer("alice", "correct horse")])
    greeting = await login.perspective.callRemote("hello")

    keycard = login.keycard
    assert keycard.expires is not None
    expires = datetime.fromtimestamp(keycard.expires, tz=timezone.utc)
    print(f"avatar id:  {keycard.avatarId}")
    print(f"keycard id: {keycard.id}")
    print(f"expires:    {expires.isoformat(timespec='seconds')}")
    print(f"server says: {greeting}")

    factory.disconnect()
    await port.stopListening()


def run(reactor: IReactorCore | IReactorTCP | IReactorTime) -> Any:
    from twisted.internet.defer import Deferred

    return Deferred.fromCoroutine(main(reactor))


if __name__ == "__main__":
    # No options: this only answers --help (and refuses any argument).
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    task.react(run, [])
    sys.exit(0)
