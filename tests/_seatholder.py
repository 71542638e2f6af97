"""
A keycard client that logs in and holds its keycard (and its seat) until it
is killed, for the heartbeat tests (stopped with SIGSTOP, it is a frozen
host):

    python -m tests._seatholder PORT USER < password

It writes C{seated KEYCARD-ID} once logged in, or C{refused: ERROR} and
exits 1.  It has no code of its own for heartbeats: its broker answers
them.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint

from twisted_keycard import KeycardClientFactory
from twisted_keycard.scram import SCRAMAnswerer

reactor: Any = _reactor


async def hold(port: int, user: str, password: str) -> None:
    factory = KeycardClientFactory()
    await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
    login = await factory.loginWithKeycard([SCRAMAnswerer(user, password)])
    print(f"seated {login.keycard.id}", flush=True)


def main() -> None:
    port, user = int(sys.argv[1]), sys.argv[2]
    password = sys.stdin.read().strip()
    status = []

    def failed(failure: Any) -> None:
        print(f"refused: {failure.getErrorMessage()}", flush=True)
        status.append(1)
        reactor.stop()

    reactor.callWhenRunning(
        lambda: ensureDeferred(hold(port, user, password)).addErrback(failed)
    )
    reactor.run()
    sys.exit(status[0] if status else 0)


if __name__ == "__main__":
    main()
