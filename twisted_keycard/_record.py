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
