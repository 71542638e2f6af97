"""
An application's PB server over its own portal, as
L{KeycardRoot.fromPortal} makes it: Twisted's in-memory password checker,
a bouncer of the root's own (L{CheckPasswordSCRAM} over that checker), and
PB's own login on the same port with C{--stock}.  For the attack suite and
C{bench/enumeration.py}, each in a process of its own::

    python -m tests._portalroot LISTEN NAME:PASSWORD... [--stock]
        [--throttle-account N] [--throttle-address N]

It logs to its standard output and prints C{listening on PORT} once it
listens; without C{--throttle-account} it does not throttle.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from typing import Any

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.logger import globalLogBeginner, textFileLogObserver

from tests._realm import AvatarRealm
from twisted_keycard import KeycardRoot, KeycardServerFactory
from twisted_keycard.bouncer import Throttle

reactor: Any = _reactor


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("listen")
    parser.add_argument("users", nargs="+", help="NAME:PASSWORD")
    parser.add_argument("--stock", action="store_true")
    parser.add_argument("--throttle-account", type=int, default=0)
    parser.add_argument("--throttle-address", type=int, default=1000)
    return parser.parse_args(argv)


async def main(options: argparse.Namespace) -> None:
    users = dict(u.encode("utf-8").split(b":", 1) for u in options.users)
    checker = InMemoryUsernamePasswordDatabaseDontUse()
    for name, password in users.items():
        checker.addUser(name, password)
    bouncerOptions: dict[str, Any] = {}
    if options.throttle_account:
        bouncerOptions["throttle"] = Throttle(
            options.throttle_account, options.throttle_address
        )
    root = KeycardRoot.fromPortal(
        Portal(AvatarRealm(), [checker]),
        clock=reactor,
        key=secrets.token_bytes(32),
        requesterName="app",
        bouncerOptions=bouncerOptions,
        stockLogin=options.stock,
    )
    port = await serverFromString(reactor, options.listen).listen(
        KeycardServerFactory(root, clock=reactor)
    )
    print(f"listening on {port.getHost().port}", flush=True)


if __name__ == "__main__":
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    options = parse(sys.argv[1:])

    def start() -> None:
        d = Deferred.fromCoroutine(main(options))
        d.addErrback(lambda f: (f.printTraceback(sys.stdout), reactor.stop()))

    reactor.callWhenRunning(start)
    reactor.run()
