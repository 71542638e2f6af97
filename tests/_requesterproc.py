"""
A requester process for integration tests: a PB server whose clients'
keycards are checked by a remote bouncer service.

    python tests/_requesterproc.py BOUNCER_PORT LISTEN_PORT NAME [default] [spread=S]
    (password on stdin; C{default}: the default reconnection policy, not a
    fast one for tests; C{spread=S}: the requester's C{dropSpread})
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from twisted.cred.portal import IRealm, Portal
from twisted.internet import task
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.spread import pb
from zope.interface import implementer

from twisted_keycard import KeycardRoot, KeycardServerFactory
from twisted_keycard.remote import DROP_SPREAD, RemoteBouncer
from twisted_keycard.scram import SCRAMAnswerer


class Chatter(pb.Avatar):
    def __init__(self, name: str) -> None:
        self.name = name

    def perspective_whoami(self) -> str:
        return self.name


@implementer(IRealm)
class Realm:
    def requestAvatar(
        self, avatarId: Any, mind: object, *interfaces: Any
    ) -> tuple[Any, Chatter, Callable[[], None]]:
        return pb.IPerspective, Chatter(avatarId), lambda: None


async def main(
    reactor: Any,
    bouncerPort: int,
    listenPort: int,
    name: str,
    default: bool,
    spread: float | None,
) -> None:
    password = sys.stdin.readline().strip()
    remote = RemoteBouncer(
        TCP4ClientEndpoint(reactor, "127.0.0.1", bouncerPort),
        [SCRAMAnswerer(name, password)],
        clock=reactor,
        retryPolicy=None if default else lambda attempt: min(0.2 * 2**attempt, 1.0),
        dropSpread=DROP_SPREAD if spread is None else spread,
    )
    root = KeycardRoot(remote, Portal(Realm()), requesterName=name)
    remote.startService()
    await TCP4ServerEndpoint(reactor, listenPort, interface="127.0.0.1").listen(
        KeycardServerFactory(root)
    )
    print("LISTENING", flush=True)
    await Deferred()  # until killed


if __name__ == "__main__":
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    bouncerPort, listenPort, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    default = "default" in sys.argv[4:]
    spreads = [float(a[7:]) for a in sys.argv[4:] if a.startswith("spread=")]
    task.react(
        lambda reactor: ensureDeferred(
            main(
                reactor,
                bouncerPort,
                listenPort,
                name,
                default,
                spreads[0] if spreads else None,
            )
        )
    )
