"""
An application embedding a bouncer as the README shows, for the test that
it exits: C{python tests/_embedded.py HOW WHEN PATH}.

C{HOW} is C{store} (a L{Bouncer} on an C{SQLiteStore} nobody closes, as in
the README) or C{service} (a L{BouncerService} of the data directory
C{PATH}, stopped before the reactor shuts down).  It prints C{READY} once
the bouncer has its keyring (the store's thread runs) and listens; then,
for C{WHEN} C{stop}, it calls C{reactor.stop()}; for C{wait} it runs until
a signal stops the reactor.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.cred.portal import Portal
from twisted.internet import reactor as _reactor
from twisted.internet.defer import ensureDeferred

from tests._realm import AvatarRealm
from twisted_keycard import Bouncer, KeycardRoot, KeycardServerFactory
from twisted_keycard.bouncer import TokenPolicy
from twisted_keycard.service import BouncerService
from twisted_keycard.store.sqlite import SQLiteStore

reactor: Any = _reactor


def bouncerOf(how: str, path: str) -> Bouncer:
    if how == "store":
        bouncer = Bouncer(
            [], SQLiteStore(path), clock=reactor, duration=3600, tokens=TokenPolicy()
        )
        bouncer.startService()
        return bouncer
    service = BouncerService.fromDataDir(path, reactor)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    return service.bouncer


async def main(how: str, when: str, path: str) -> None:
    bouncer = bouncerOf(how, path)
    await bouncer.started
    root = KeycardRoot(bouncer, Portal(AvatarRealm()), requesterName="app")
    reactor.listenTCP(0, KeycardServerFactory(root), interface="127.0.0.1")
    print("READY", flush=True)
    if when == "stop":
        reactor.stop()


if __name__ == "__main__":
    how, when, path = sys.argv[1:]
    reactor.callWhenRunning(lambda: ensureDeferred(main(how, when, path)))
    reactor.run()
    print("STOPPED", flush=True)
