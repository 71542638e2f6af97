"""
The bouncer service's side of a remote bouncer: a realm whose avatars may
act as requesters, each with a perspective that authenticates its own
clients' keycards, and the requester told over PB when they expire.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import attrs
from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.spread import pb
from zope.interface import implementer

from twisted_keycard.bouncer._bouncer import Bouncer
from twisted_keycard.bouncer._interfaces import IRequester
from twisted_keycard.error import KeycardDenied, KeycardRefused
from twisted_keycard.keycard._keycard import Keycard

#: Keycard ids one keepAlive or adopt call may carry, at most.
MAX_IDS = 65_536

#: Characters in a requester's token for one of its client connections.
MAX_TOKEN = 64


@implementer(IRequester)
@attrs.define
class _RemoteRequester:
    """
    Tells a requester in another process to drop the clients of expired
    keycards.
    """

    mind: pb.RemoteReference
    log = Logger()

    def keycardIds(self) -> list[str]:
        return []

    def expireKeycardIds(self, keycardIds: Sequence[str]) -> Deferred[None]:
        d: Deferred[object] = self.mind.callRemote("expireKeycardIds", list(keycardIds))
        d.addErrback(lambda f: self.log.warn("requester unreachable: {f}", f=f.value))
        return d.addCallback(lambda _: None)


@implementer(IRealm)
@attrs.define
class BouncerRealm:
    """
    The realm of the bouncer service.

    @ivar requesters: the avatar ids allowed to act as requesters; an
        avatar's requester name is its avatar id.
    @ivar requesterTimeout: seconds after a requester disconnects at which
        its keycards expire, unless it reconnects first.
    """

    bouncer: Bouncer
    requesters: Collection[str]
    clock: IReactorTime
    requesterTimeout: float = 60.0
    _silence: dict[str, IDelayedCall] = attrs.field(factory=dict)
    log = Logger()

    def requestAvatar(self, avatarId: Any, mind: object, *interfaces: Any) -> Any:
        if pb.IPerspective not in interfaces:
            raise NotImplementedError("only PB perspectives")
        isRequester = avatarId in self.requesters
        perspective = BouncerPerspective(self.bouncer, avatarId, isRequester)
        if isRequester and isinstance(mind, pb.RemoteReference):
            self._attach(avatarId, mind)
            return pb.IPerspective, perspective, lambda: self._detach(avatarId)
        return pb.IPerspective, perspective, lambda: None

    def _attach(self, name: str, mind: pb.RemoteReference) -> None:
        silence = self._silence.pop(name, None)
        if silence is not None and silence.active():
            silence.cancel()
        self.bouncer.registerRequester(name, _RemoteRequester(mind))
        self.log.info("requester {name} connected", name=name)

    def _detach(self, name: str) -> None:
        self.bouncer.unregisterRequester(name)
        self.log.info("requester {name} disconnected", name=name)
        self._silence[name] = self.clock.callLater(
            self.requesterTimeout, self._silent, name
        )

    def _silent(self, name: str) -> None:
        del self._silence[name]
        self.log.info("requester {name} silent: expiring its keycards", name=name)
        self.bouncer.expireRequester(name).addErrback(
            lambda f: self.log.failure("expiring keycards of {name}", f, name=name)
        )

    def stop(self) -> None:
        """
        Cancel the silence timers.
        """
        for call in self._silence.values():
            if call.active():
                call.cancel()
        self._silence.clear()


class BouncerPerspective(pb.Avatar):
    """
    What a logged-in avatar may do on the bouncer service: say who it is,
    and, for a requester, use the bouncer for its own clients.
    """

    def __init__(self, bouncer: Bouncer, avatarId: str, isRequester: bool) -> None:
        self.bouncer = bouncer
        self.avatarId = avatarId
        self.isRequester = isRequester

    def perspective_whoami(self) -> str:
        return self.avatarId

    def _requester(self) -> str:
        if not self.isRequester:
            raise KeycardDenied("this avatar is not a requester")
        return self.avatarId

    def perspective_keycardClasses(self) -> list[str]:
        self._requester()
        return [cls.keycardType for cls in self.bouncer.keycardClasses]

    def perspective_authenticate(
        self, keycard: object, connection: object = None
    ) -> Deferred[Keycard]:
        """
        One message from a client of this requester; C{connection} is the
        requester's token for that client's connection, if it sends one.
        """
        name = self._requester()
        if not isinstance(keycard, Keycard):
            raise KeycardRefused()
        keycard.requesterName = name
        return self.bouncer.authenticate(keycard, _connection(name, connection))

    def perspective_connectionLost(self, connection: object) -> None:
        """
        The client connection of this requester with that token is gone.
        """
        key = _connection(self._requester(), connection)
        if key is not None:
            self.bouncer.connectionLost(key)

    def perspective_removeKeycardId(self, keycardId: object) -> Deferred[bool]:
        name = self._requester()
        held = self.bouncer.held.get(keycardId) if isinstance(keycardId, str) else None
        if held is None or held.requesterName != name:
            return succeed(False)
        return self.bouncer.removeKeycardId(held.keycardId)

    def perspective_keepAlive(self, keycardIds: object) -> Deferred[int]:
        return self.bouncer.keepAlive(self._requester(), _ids(keycardIds))

    def perspective_adopt(self, keycardIds: object) -> Deferred[int]:
        """
        The requester (re)connected and its clients hold these keycards.
        """
        return self.bouncer.adopt(self._requester(), _ids(keycardIds))


def _connection(requesterName: str, token: object) -> tuple[str, str] | None:
    """
    A requester's client connection, as the bouncer tells connections apart:
    the requester's name and its token.
    """
    if token is None:
        return None
    if not isinstance(token, str) or len(token) > MAX_TOKEN:
        raise KeycardDenied(f"a connection token is at most {MAX_TOKEN} characters")
    return (requesterName, token)


def _ids(keycardIds: object) -> list[str]:
    if not isinstance(keycardIds, list) or len(keycardIds) > MAX_IDS:
        raise KeycardDenied(f"a list of at most {MAX_IDS} keycard ids is needed")
    return [k for k in keycardIds if isinstance(k, str)]
