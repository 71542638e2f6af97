"""
A realm for tests: its avatars answer C{whoami} and count their logouts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.cred.portal import IRealm
from twisted.spread import pb
from zope.interface import implementer


class Perspective(pb.Avatar):
    def __init__(self, avatarId: str, mind: object) -> None:
        self.avatarId = avatarId
        self.mind = mind

    def perspective_whoami(self) -> str:
        return self.avatarId


@implementer(IRealm)
@attrs.define
class AvatarRealm:
    avatars: list[Perspective] = attrs.field(factory=list)
    loggedOut: list[str] = attrs.field(factory=list)

    def requestAvatar(
        self, avatarId: Any, mind: object, *interfaces: Any
    ) -> tuple[Any, Perspective, Callable[[], None]]:
        assert pb.IPerspective in interfaces
        avatar = Perspective(avatarId, mind)
        self.avatars.append(avatar)
        return pb.IPerspective, avatar, lambda: self.loggedOut.append(avatarId)
