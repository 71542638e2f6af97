"""
A service's link to the bouncer service in another process: an
L{ITicketRedeemer} over PB, logged in as the service's avatar, which ends
every session when the link drops (no revocation could reach it then).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.application.internet import ClientService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.spread import pb
from zope.interface import implementer

from twisted_keycard.error import SessionRefused
from twisted_keycard.keycard._interfaces import IAnswerer
from twisted_keycard.pb._client import KeycardClientFactory
from twisted_keycard.sessions._interfaces import ISessionListener, ITicketRedeemer
from twisted_keycard.sessions._records import SessionGrant


class _Mind(pb.Referenceable):
    def __init__(self, link: RemoteTicketRedeemer) -> None:
        self._link = link

    def remote_endSessions(self, sessionIds: object) -> None:
        listener = self._link._listener
        if isinstance(sessionIds, list) and listener is not None:
            listener.endSessions([s for s in sessionIds if isinstance(s, str)])

    def remote_endAllSessions(self) -> None:
        self._link._endAll()


@implementer(ITicketRedeemer)
class RemoteTicketRedeemer:
    """
    The bouncer service, as a service in another process reaches it: it
    logs in with its own keycard kinds (its avatar id is the service's
    name, which the service must list in C{--services}), reconnects with
    backoff when the connection drops, and tells its listener to end every
    session when it does.
    """

    log = Logger()

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        answerers: Sequence[IAnswerer],
        *,
        clock: IReactorTime,
        retryPolicy: Callable[[int], float] | None = None,
    ) -> None:
        self._answerers = list(answerers)
        self._listener: ISessionListener | None = None
        self._perspective: pb.RemoteReference | None = None
        self._factory = KeycardClientFactory()
        self._service = ClientService(
            endpoint,
            self._factory,
            retryPolicy=retryPolicy,
            clock=clock,
            prepareConnection=self._prepare,
        )

    def startService(self) -> None:
        self._service.startService()

    def stopService(self) -> Deferred[None]:
        d: Deferred[None] = self._service.stopService()
        return d

    def whenConnected(self) -> Deferred[None]:
        """
        A L{Deferred} firing once logged in to the bouncer.
        """
        d: Deferred[Any] = self._service.whenConnected()
        return d.addCallback(lambda _: None)

    def _prepare(self, broker: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(self._login(broker))

    async def _login(self, broker: pb.Broker) -> None:
        perspective = await self._factory.login(self._answerers, _Mind(self))
        broker.notifyOnDisconnect(lambda: self._lost(perspective))
        self._perspective = perspective
        self.log.info("connected to the bouncer for sessions")

    def _lost(self, perspective: pb.RemoteReference) -> None:
        if self._perspective is perspective:
            self._perspective = None
        self.log.info("lost the bouncer: ending every session")
        self._endAll()

    def _endAll(self) -> None:
        if self._listener is not None:
            self._listener.endAllSessions()

    def listen(self, listener: ISessionListener) -> None:
        self._listener = listener

    async def _call(self, method: str, *args: object) -> Any:
        perspective = self._perspective
        if perspective is None or perspective.broker.disconnected:
            raise SessionRefused()
        try:
            return await perspective.callRemote(method, *args)
        except Exception:
            raise SessionRefused() from None

    def redeem(self, ticketId: str) -> Deferred[SessionGrant]:
        async def redeem() -> SessionGrant:
            return SessionGrant.fromWire(await self._call("redeem", ticketId))

        return Deferred.fromCoroutine(redeem())

    def confirm(
        self,
        ticketId: str,
        clientNonce: bytes,
        serviceNonce: bytes,
        confirmation: bytes,
    ) -> Deferred[None]:
        async def confirm() -> None:
            await self._call(
                "confirm", ticketId, clientNonce, serviceNonce, confirmation
            )

        return Deferred.fromCoroutine(confirm())

    def ended(self, sessionIds: Sequence[str]) -> Deferred[None]:
        async def ended() -> None:
            # A service that lost the bouncer was forgotten there already.
            if self._perspective is not None:
                await self._call("ended", list(sessionIds))

        return Deferred.fromCoroutine(ended())
