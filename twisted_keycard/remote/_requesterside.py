"""
The requester's side of a remote bouncer: an L{IBouncer} over a PB
connection to the bouncer service, so that a L{KeycardRoot} uses it as it
would an in-process bouncer.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from twisted.application.internet import ClientService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.spread import pb
from zope.interface import implementer

from twisted_keycard.bouncer._interfaces import IBouncer, IRequester
from twisted_keycard.error import KeycardDenied
from twisted_keycard.keycard._interfaces import IAnswerer
from twisted_keycard.keycard._keycard import Keycard, keycardClassFor
from twisted_keycard.pb._client import KeycardClientFactory, _localError
from twisted_keycard.remote._bouncerside import MAX_IDS


class _Mind(pb.Referenceable):
    def __init__(self, remote: RemoteBouncer) -> None:
        self._remote = remote

    def remote_expireKeycardIds(self, keycardIds: object) -> None:
        if isinstance(keycardIds, list):
            self._remote._expired([k for k in keycardIds if isinstance(k, str)])


@implementer(IBouncer)
class RemoteBouncer:
    """
    An L{IBouncer} in another process, reached over PB.

    It logs in to the bouncer service with its own keycard kinds, reconnects
    with backoff when the connection drops, and after each reconnection
    tells the bouncer which keycard ids its requester still holds.
    """

    log = Logger()

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        answerers: Sequence[IAnswerer],
        *,
        clock: IReactorTime,
        name: str = "remote-bouncer",
        retryPolicy: Callable[[int], float] | None = None,
    ) -> None:
        self.name = name
        self.keycardClasses: tuple[type[Keycard], ...] = ()
        self._answerers = list(answerers)
        self._requesters: dict[str, IRequester] = {}
        self._factory = KeycardClientFactory()
        self._service = ClientService(
            endpoint,
            self._factory,
            retryPolicy=retryPolicy,
            clock=clock,
            prepareConnection=self._prepare,
        )
        self._perspective: pb.RemoteReference | None = None
        #: Tokens that stand for the requester's client connections.
        self._connections: dict[Hashable, str] = {}

    def startService(self) -> None:
        self._service.startService()

    def stopService(self) -> Deferred[None]:
        d: Deferred[None] = self._service.stopService()
        return d

    def _prepare(self, broker: object) -> Deferred[None]:
        return Deferred.fromCoroutine(self._loginAndResync())

    async def _loginAndResync(self) -> None:
        perspective = await self._factory.login(self._answerers, _Mind(self))
        tags = await perspective.callRemote("keycardClasses")
        self.keycardClasses = tuple(
            cls for tag in tags if (cls := keycardClassFor(tag)) is not None
        )
        held = [k for r in self._requesters.values() for k in r.keycardIds()]
        if held:
            await perspective.callRemote("adopt", held[:MAX_IDS])
        self._perspective = perspective
        self.log.info("connected to the bouncer; resent {count} ids", count=len(held))

    async def _call(self, method: str, *args: object) -> Any:
        perspective = self._perspective
        if perspective is None or perspective.broker.disconnected:
            self._perspective = None
            raise KeycardDenied("the bouncer is unreachable; try again later")
        return await perspective.callRemote(method, *args).addErrback(_localError)

    def authenticate(
        self, keycard: Keycard, connection: Hashable | None = None
    ) -> Deferred[Keycard]:
        """
        Forward one message; the client's connection travels as a random
        token, so that the bouncer bounds and ends its exchanges.
        """
        token = None
        if connection is not None:
            token = self._connections.get(connection)
            if token is None:
                token = self._connections[connection] = secrets.token_urlsafe(12)
        return Deferred.fromCoroutine(self._call("authenticate", keycard, token))

    def connectionLost(self, connection: Hashable) -> None:
        """
        Tell the bouncer, if it is reachable, that the client connection is
        gone; otherwise its exchanges time out there.
        """
        token = self._connections.pop(connection, None)
        perspective = self._perspective
        if token is None or perspective is None or perspective.broker.disconnected:
            return
        perspective.callRemote("connectionLost", token).addErrback(
            lambda f: self.log.warn("bouncer unreachable: {f}", f=f.value)
        )

    def registerRequester(self, name: str, requester: IRequester) -> None:
        self._requesters[name] = requester

    def unregisterRequester(self, name: str) -> None:
        self._requesters.pop(name, None)

    def removeKeycardId(self, keycardId: str) -> Deferred[bool]:
        return Deferred.fromCoroutine(self._call("removeKeycardId", keycardId))

    def expireKeycardIds(self, keycardIds: Sequence[str]) -> Deferred[int]:
        """
        Expire keycards on this side only: a requester cannot make the
        bouncer expire keycards.
        """
        self._expired(list(keycardIds))
        return succeed(len(keycardIds))

    def keepAlive(self, requesterName: str, keycardIds: Sequence[str]) -> Deferred[int]:
        return Deferred.fromCoroutine(self._call("keepAlive", list(keycardIds)))

    def _expired(self, keycardIds: list[str]) -> None:
        for requester in list(self._requesters.values()):
            requester.expireKeycardIds(keycardIds)
