"""
The record a store keeps of an issued keycard.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class IssuedKeycard:
    """
    What a store knows about one issued keycard.

    @ivar keycardId: the id the bouncer issued.
    @ivar avatarId: the avatar the checker authenticated.
    @ivar requesterName: the requester the keycard came through.
    @ivar bouncerName: the bouncer that issued it.
    @ivar keycardType: the keycard's type tag on the wire.
    @ivar address: the client's address as the requester saw it, if known.
    @ivar issued: POSIX time of issue.
    @ivar duration: seconds of validity granted at each issue or renewal.
    @ivar expires: POSIX time at which it expires.
    @ivar parentId: the keycard whose token this one was issued for, if
        any; revoking a parent revokes its children.
    @ivar seatPool: the seat pool this keycard holds a seat of, if any.
    @ivar held: whether a client holds it now; a released keycard is kept
        while its token is valid, but counts against no quota.
    @ivar familyId: the keycard id of the password login that started its
        chain of token logins (its own id for a password login); revoking
        any keycard revokes its whole family.
    @ivar holderId: the lease of the running bouncer that holds it (see
        L{twisted_keycard.store.ILeaseStore}), if any: when that lease runs
        out, the keycard is released.
    """

    keycardId: str
    avatarId: str
    requesterName: str | None
    bouncerName: str
    keycardType: str
    address: str | None
    issued: float
    duration: float
    expires: float
    parentId: str | None = None
    seatPool: str | None = None
    held: bool = True
    familyId: str | None = None
    holderId: str | None = None


@attrs.frozen
class Revocation:
    """
    A revoked keycard id, refused until C{expires}, when it would have
    expired anyway.

    @ivar keycardId: the revoked id.
    @ivar expires: POSIX time after which the revocation may be flushed.
    @ivar revokedAt: POSIX time of the revocation.
    @ivar reason: a short text for the audit log.
    """

    keycardId: str
    expires: float
    revokedAt: float
    reason: str = ""
