"""
A bouncer process for the crash test: on the SQLite store given, it issues
keycards (token logins, each in a family of its own) and revokes every
other one, printing C{REVOKED <token>} after each revocation call has
returned, until killed.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import task
from twisted.internet.defer import ensureDeferred

from twisted_keycard import Bouncer, KeycardState
from twisted_keycard.bouncer._bouncer import newKeycardId
from twisted_keycard.bouncer._settings import TokenPolicy
from twisted_keycard.store.sqlite._store import SQLiteStore
from twisted_keycard.tokens import TokenKeycard
from twisted_keycard.tokens._tokens import TokenClaims, sign


async def main(reactor: Any, path: str) -> None:
    store = await SQLiteStore.open(path)
    bouncer = Bouncer([], store, clock=reactor, duration=3600, tokens=TokenPolicy())
    bouncer.startService()
    await bouncer.started
    assert bouncer.keys is not None
    keyring = await bouncer.keys.current()
    now = reactor.seconds()
    for i in range(100_000):
        # A seed of its own for each: revoking a keycard revokes its family.
        seed = sign(
            TokenClaims(newKeycardId(), "alice", now, now + 3600, "seed", "r"),
            keyring.signing,
        )
        keycard = TokenKeycard(presented=seed, requesterName="r", address="127.0.0.1")
        issued = await bouncer.authenticate(keycard)
        assert issued.state is KeycardState.AUTHENTICATED and issued.id
        print(f"ISSUED {issued.token}", flush=True)
        if i % 2:
            await bouncer.revokeKeycardIds([issued.id], "crash test")
            print(f"REVOKED {issued.token}", flush=True)


if __name__ == "__main__":
    task.react(lambda reactor: ensureDeferred(main(reactor, sys.argv[1])))
