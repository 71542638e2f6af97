"""
The bouncer service's side of a remote bouncer: a realm whose avatars may
act as requesters, each with a perspective that authenticates its own
clients' keycards, and the requester told over PB when they expire.

A requester name has one connection at a time: a second login under a name
whose connection lives is refused (see L{BouncerRealm}).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import attrs
from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.spread import pb
from zope.interface import implementer

from twisted_keycard._printable import printable
from twisted_keycard.bouncer import AVATAR, REQUESTER, Bouncer, IRequester
from twisted_keycard.error import KeycardDenied, KeycardRefused, MalformedMessage
from twisted_keycard.keycard import Keycard
from twisted_keycard.store import (
    IKeycardStore,
    IRevocationStore,
    IssuedKeycard,
)
from twisted_keycard.tokens import FAMILY

#: Keycard ids one keepAlive or adopt call may carry, at most.
MAX_IDS = 65_536

#: Revocation keys looked up in one store query.
_LOOKUP = 900

#: What a second connection under a connected requester's name is told.
ALREADY_CONNECTED = "this requester is already connected"

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
        d.addErrback(
            lambda f: self.log.warn("requester unreachable: {f}", f=printable(f.value))
        )
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
    @ivar pingTimeout: seconds the connected requester has to answer when a
        second connection claims its name; one that does not is dropped, so
        that a requester whose old connection died unnoticed gets in on its
        next try.
    """

    bouncer: Bouncer
    requesters: Collection[str]
    clock: IReactorTime
    requesterTimeout: float = 60.0
    pingTimeout: float = 10.0
    _silence: dict[str, IDelayedCall] = attrs.field(factory=dict)
    #: The mind of each connected requester's one connection.
    _attached: dict[str, pb.RemoteReference] = attrs.field(factory=dict)
    _pinging: set[str] = attrs.field(factory=set)
    log = Logger()

    def requestAvatar(self, avatarId: Any, mind: object, *interfaces: Any) -> Any:
        """
        @raise KeycardDenied: for a requester whose name has a live
            connection already.
        """
        if pb.IPerspective not in interfaces:
            raise NotImplementedError("only PB perspectives")
        isRequester = avatarId in self.requesters
        perspective = BouncerPerspective(self.bouncer, avatarId, isRequester)
        if isRequester and isinstance(mind, pb.RemoteReference):
            self._attach(avatarId, mind)
            return pb.IPerspective, perspective, lambda: self._detach(avatarId, mind)
        return pb.IPerspective, perspective, lambda: None

    def _attach(self, name: str, mind: pb.RemoteReference) -> None:
        current = self._attached.get(name)
        if current is not None and not current.broker.disconnected:
            self.log.warn(
                "refused a second connection of requester {name}",
                name=printable(name),
            )
            self._ping(name, current)
            raise KeycardDenied(ALREADY_CONNECTED)
        silence = self._silence.pop(name, None)
        if silence is not None and silence.active():
            silence.cancel()
        self._attached[name] = mind
        self.bouncer.registerRequester(name, _RemoteRequester(mind))
        self.log.info("requester {name} connected", name=printable(name))

    def _detach(self, name: str, mind: pb.RemoteReference) -> None:
        if self._attached.get(name) is not mind:
            return  # not the registered connection: it stays registered
        del self._attached[name]
        self.bouncer.unregisterRequester(name)
        self.log.info("requester {name} disconnected", name=printable(name))
        self._silence[name] = self.clock.callLater(
            self.requesterTimeout, self._silent, name
        )

    def _ping(self, name: str, mind: pb.RemoteReference) -> None:
        """
        Ask the connected requester to answer (an empty expiry), and drop
        its connection if it does not within L{pingTimeout}.
        """
        if name in self._pinging:
            return
        self._pinging.add(name)
        d: Deferred[object] = mind.callRemote("expireKeycardIds", [])
        d.addTimeout(self.pingTimeout, self.clock)

        def silent(failure: Failure) -> None:
            self.log.warn(
                "requester {name} did not answer: dropping its connection",
                name=printable(name),
            )
            transport: Any = mind.broker.transport
            if transport is not None:
                getattr(transport, "abortConnection", transport.loseConnection)()

        d.addCallbacks(lambda _: None, silent)
        d.addBoth(lambda _: self._pinging.discard(name))

    def _silent(self, name: str) -> None:
        del self._silence[name]
        shown = printable(name)
        self.log.info("requester {name} silent: expiring its keycards", name=shown)
        self.bouncer.expireRequester(name).addErrback(
            lambda f: self.log.failure("expiring keycards of {name}", f, name=shown)
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

    def perspectiveMessageReceived(
        self, broker: pb.Broker, message: str, args: object, kw: object
    ) -> object:
        """
        Call the method named; a name this perspective lacks is refused
        with L{MalformedMessage}, which PB sends back without logging the
        traceback a logged-in client could otherwise fill the log with.
        """
        if not callable(getattr(self, f"perspective_{message}", None)):
            raise MalformedMessage(f"no method {printable(message)!r} here")
        return super().perspectiveMessageReceived(broker, message, args, kw)

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

    def perspective_adopt(self, keycardIds: object) -> Deferred[list[str]]:
        """
        The requester (re)connected and its clients hold these keycards:
        the bouncer takes charge of those issued through this requester
        that are neither expired nor revoked (even while the bouncer was
        down), and expires the revoked ones.

        @return: a L{Deferred} firing with the ids taken; the requester
            drops the clients of the others.
        """
        name = self._requester()
        return Deferred.fromCoroutine(self._adopt(name, _ids(keycardIds)))

    def perspective_revokedOf(self, keycardIds: object) -> Deferred[list[str]]:
        """
        Which of these keycard ids, that the bouncer did not take back in
        L{perspective_adopt}, are revoked by id: the requester drops their
        clients at once, and spreads the drop of the others (expired, or
        lost while it was away) over a while.

        @return: a L{Deferred} firing with those ids.
        """
        self._requester()
        return Deferred.fromCoroutine(revokedIds(self.bouncer.store, _ids(keycardIds)))

    async def _adopt(self, name: str, keycardIds: list[str]) -> list[str]:
        bouncer = self.bouncer
        await bouncer.adopt(name, keycardIds)
        now = bouncer.clock.seconds()
        taken = [
            record
            for keycardId in dict.fromkeys(keycardIds)
            if (record := bouncer.held.get(keycardId)) is not None
            and record.requesterName == name
            and record.expires > now
        ]
        revoked = await revokedAmong(bouncer.store, taken)
        if revoked:
            await bouncer.expireKeycardIds(sorted(revoked))
        return [r.keycardId for r in taken if r.keycardId not in revoked]


async def revokedIds(store: IKeycardStore, keycardIds: Sequence[str]) -> list[str]:
    """
    The ids among C{keycardIds} that a revocation in C{store} names (by id
    only: marks need the keycard's record).
    """
    if not keycardIds or not IRevocationStore.providedBy(store):
        return []
    found: set[str] = set()
    wanted = list(dict.fromkeys(keycardIds))
    for i in range(0, len(wanted), _LOOKUP):
        found.update(
            r.keycardId for r in await store.revocationsOf(wanted[i : i + _LOOKUP])
        )
    return [k for k in wanted if k in found]


async def revokedAmong(
    store: IKeycardStore, records: Sequence[IssuedKeycard]
) -> set[str]:
    """
    The ids of C{records} that a revocation in C{store} reaches: by id, by
    family, or by avatar or requester for keycards issued before it.
    """
    if not records or not IRevocationStore.providedBy(store):
        return set()
    keys: dict[str, None] = {}
    for r in records:
        keys.update(dict.fromkeys([r.keycardId, AVATAR + r.avatarId]))
        keys[REQUESTER + (r.requesterName or "")] = None
        if r.familyId is not None:
            keys[FAMILY + r.familyId] = None
    found: dict[str, float] = {}
    wanted = list(keys)
    for i in range(0, len(wanted), _LOOKUP):
        for revocation in await store.revocationsOf(wanted[i : i + _LOOKUP]):
            found[revocation.keycardId] = revocation.revokedAt
    if not found:
        return set()

    def reached(r: IssuedKeycard) -> bool:
        if r.keycardId in found:
            return True
        if r.familyId is not None and FAMILY + r.familyId in found:
            return True
        marks = [AVATAR + r.avatarId, REQUESTER + (r.requesterName or "")]
        return any(found.get(m, -1.0) >= r.issued for m in marks)

    return {r.keycardId for r in records if reached(r)}


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
