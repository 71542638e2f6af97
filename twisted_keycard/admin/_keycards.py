"""
What C{keycard list}, C{keycard revoke} and C{keycard user remove} do in
the store, as coroutines over any store and clock: they return what to
print, so tests run them on a L{MemoryStore} and a C{Clock}.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime

from twisted_keycard._isotime import isoTime
from twisted_keycard._printable import printable
from twisted_keycard.bouncer._bouncer import DEFAULT_DURATION
from twisted_keycard.bouncer._policy import TokenPolicy
from twisted_keycard.bouncer._revoker import Revoker
from twisted_keycard.store._interfaces import IKeycardStore, IRevocationStore
from twisted_keycard.store._records import IssuedKeycard

#: As long as a token issued now by a bouncer with the defaults can live.
TOKEN_LIFETIME = DEFAULT_DURATION + TokenPolicy().skew


@attrs.frozen
class Outcome:
    """
    What a command found: the lines to print, and whether it matched
    anything (else the command exits with status 1).
    """

    lines: list[str]
    matched: bool = True


async def selectKeycards(
    store: IKeycardStore, avatar: str | None = None, requester: str | None = None
) -> list[IssuedKeycard]:
    """
    The keycards on record, oldest first, of C{avatar} and through
    C{requester} when given.
    """
    if avatar is not None:
        records = await store.byAvatar(avatar)
    elif requester is not None:
        records = await store.byRequester(requester)
    else:
        records = await store.expiredBefore(float("inf"))
    if requester is not None:
        records = [r for r in records if r.requesterName == requester]
    return sorted(records, key=lambda r: (r.issued, r.keycardId))


def table(records: Iterable[IssuedKeycard]) -> list[str]:
    """
    One line per keycard under a header, in columns as wide as their
    longest value; names come from peers, so they are escaped and cannot
    rewrite the screen.
    """
    header = ["id", "avatar", "requester", "held", "issued", "expires"]
    rows = [header] + [
        [
            printable(r.keycardId),
            printable(r.avatarId),
            printable(r.requesterName),
            "yes" if r.held else "no",
            isoTime(r.issued),
            isoTime(r.expires),
        ]
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return [
        " ".join(
            [*(v.ljust(w) for v, w in zip(row[:-1], widths, strict=True)), row[-1]]
        )
        for row in rows
    ]


def asJSON(records: Iterable[IssuedKeycard]) -> str:
    """
    The keycards as a JSON array, one object per keycard, times in ISO
    8601; JSON's escapes keep control characters off the screen.
    """
    return json.dumps(
        [
            {
                "id": r.keycardId,
                "avatar": r.avatarId,
                "requester": r.requesterName,
                "bouncer": r.bouncerName,
                "kind": r.keycardType,
                "address": r.address,
                "held": r.held,
                "issued": isoTime(r.issued),
                "expires": isoTime(r.expires),
                "parent": r.parentId,
                "seatPool": r.seatPool,
            }
            for r in records
        ],
        indent=2,
    )


def _revoker(store: Any, clock: IReactorTime) -> Revoker:
    return Revoker(store, clock, TOKEN_LIFETIME)


async def revokeMatching(
    store: IKeycardStore,
    clock: IReactorTime,
    keycardId: str | None,
    avatar: str | None,
    requester: str | None,
    reason: str,
) -> Outcome:
    """
    Revoke one keycard, or every keycard and token of an avatar or issued
    through a requester; when nothing on record matches, revoke nothing
    and say so (a mistyped id or name would otherwise look revoked).
    """
    revoker = _revoker(store, clock)
    if keycardId is not None:
        what = f"keycard {printable(keycardId)}"
        if await store.get(keycardId) is None:
            assert IRevocationStore.providedBy(store)
            if await store.isRevoked(keycardId):
                return Outcome([f"{what} is already revoked"])
            return Outcome([f"no {what} on record: nothing revoked"], matched=False)
        count = await revoker.revokeKeycardIds([keycardId], reason)
    elif avatar is not None:
        what = f"avatar {printable(avatar)}"
        if not await store.byAvatar(avatar):
            return Outcome([f"no keycard of {what} on record: nothing revoked"], False)
        count = await revoker.revokeAvatar(avatar, reason)
        what = f"every keycard and token of {what}"
    else:
        assert requester is not None
        what = f"requester {printable(requester)}"
        if not await store.byRequester(requester):
            return Outcome(
                [f"no keycard issued through {what} on record: nothing revoked"], False
            )
        count = await revoker.revokeRequester(requester, reason)
        what = f"every keycard and token issued through {what}"
    return Outcome(
        [
            f"revoked {what} ({count} keycard(s) on record); running bouncers"
            " refuse them within a second"
        ]
    )


async def revokeUser(store: IKeycardStore, clock: IReactorTime, name: str) -> str:
    """
    Revoke every keycard and token of a removed user, so that a token they
    saved no longer logs them in.

    @return: the line that says so.
    """
    count = await _revoker(store, clock).revokeAvatar(name, "user removed")
    shown = printable(name)
    if count:
        return f"revoked the {count} keycard(s) and every token of {shown}"
    return f"{shown} held no keycard; any token of theirs is revoked too"
