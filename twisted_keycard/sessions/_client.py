"""
The client's side of a brokered session: one call asks the bouncer for a
ticket, connects to the service, checks the service's proof, confirms, and
gives the perspective on a sealed connection.
"""

from __future__ import annotations

import secrets
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure
from twisted.spread import pb

from twisted_keycard.error import ServerAuthenticationFailed, SessionRefused
from twisted_keycard.pb import KeycardClientFactory, KeycardLogin
from twisted_keycard.sessions._interfaces import (
    MAC_BYTES,
    NONCE_BYTES,
    SessionGrant,
    SessionKeys,
    Transcript,
    matches,
)
from twisted_keycard.sessions._service import SessionBroker


def _refused(failure: Failure) -> Failure:
    """
    Any failure of the exchange, the service's refusal or a connection it
    closed, as the local L{SessionRefused}.
    """
    if failure.check(ServerAuthenticationFailed):
        return failure
    return Failure(SessionRefused())


@attrs.frozen
class Session:
    """
    A brokered session, as its client holds it.

    @ivar perspective: the avatar the service's realm gave, on the sealed
        connection.
    @ivar grant: the ticket it was established with: C{clientName} and
        C{serviceName} are the names the bouncer vouches for.
    @ivar broker: the sealed connection's broker.
    """

    perspective: pb.RemoteReference
    grant: SessionGrant
    broker: SessionBroker

    @property
    def sessionId(self) -> str:
        return self.grant.ticketId

    @property
    def clientName(self) -> str:
        return self.grant.clientName

    @property
    def serviceName(self) -> str:
        return self.grant.serviceName

    def end(self) -> None:
        """
        Close the connection: the service ends the session.
        """
        transport = self.broker.transport
        if transport is not None:
            transport.loseConnection()

    def whenEnded(self) -> Deferred[None]:
        """
        A L{Deferred} firing when the connection ends (the service dropped
        it: revoked, idle, a message that failed; or L{end} was called).
        """
        d: Deferred[None] = Deferred()
        if self.broker.disconnected:
            d.callback(None)
        else:
            self.broker.notifyOnDisconnect(lambda: d.callback(None))
        return d


class SessionClientFactory(KeycardClientFactory):
    """
    A PB client factory whose broker can seal its connection; connect it to
    a service's L{SessionServerFactory}, then call L{establish}.
    """

    protocol = SessionBroker

    def establish(self, grant: SessionGrant, mind: object = None) -> Deferred[Session]:
        """
        Present the ticket of C{grant} to the service, check the service's
        proof, confirm, and seal the connection.

        @param mind: passed to the service's realm.
        @return: a L{Deferred} firing with the L{Session}, or failing with
            L{ServerAuthenticationFailed} when the service could not prove
            it holds the session (the connection is closed), or
            L{SessionRefused}.
        """
        d = Deferred.fromCoroutine(self._establish(grant, mind))
        return d.addErrback(_refused)

    async def _establish(self, grant: SessionGrant, mind: object) -> Session:
        root: pb.RemoteReference = await self.getRootObject()
        broker = root.broker
        assert isinstance(broker, SessionBroker)
        nonce = secrets.token_bytes(NONCE_BYTES)
        answer: Any = await root.callRemote("open", grant.ticketId, nonce)
        if not (
            isinstance(answer, list | tuple)
            and len(answer) == 2
            and isinstance(answer[0], bytes)
            and len(answer[0]) == NONCE_BYTES
        ):
            self.disconnect()
            raise SessionRefused()
        serviceNonce, proof = answer
        transcript = Transcript(
            grant.ticketId, grant.clientName, grant.serviceName, nonce, serviceNonce
        )
        keys = SessionKeys.derive(grant.secret)
        expected = transcript.serviceProof(keys)
        if not (isinstance(proof, bytes) and len(proof) == MAC_BYTES) or not matches(
            proof, expected
        ):
            self.disconnect()
            raise ServerAuthenticationFailed(
                f"the service could not prove it is {grant.serviceName!r}"
            )
        d = root.callRemote("confirm", transcript.clientConfirmation(keys, proof), mind)
        broker.seal(keys.clientToService, keys.serviceToClient)
        perspective = await d
        if not isinstance(perspective, pb.RemoteReference):
            self.disconnect()
            raise SessionRefused()
        return Session(perspective, grant, broker)


def requestTicket(login: KeycardLogin, serviceName: str) -> Deferred[SessionGrant]:
    """
    Ask the bouncer C{login} is logged in to for a ticket for
    C{serviceName}.

    @return: a L{Deferred} firing with the L{SessionGrant}, or failing with
        L{SessionRefused}.
    """

    async def ask() -> SessionGrant:
        keycardId = login.keycard.id
        if keycardId is None:
            raise SessionRefused()
        state = await login.perspective.callRemote("ticket", serviceName, keycardId)
        return SessionGrant.fromWire(state)

    return Deferred.fromCoroutine(ask()).addErrback(_refused)


def connectSession(
    login: KeycardLogin,
    endpoint: IStreamClientEndpoint,
    serviceName: str,
    *,
    mind: object = None,
) -> Deferred[Session]:
    """
    Connect to service C{serviceName} at C{endpoint} through the bouncer
    C{login} is logged in to: ask the bouncer for a ticket, present it,
    check the service's proof, confirm, and seal the connection.

    @param login: the client's login to the bouncer service; its keycard
        must stay held (the connection open) for the session to last.
    @param mind: passed to the service's realm.
    @return: a L{Deferred} firing with the L{Session} (whose
        C{perspective} is the service's avatar), or failing with
        L{SessionRefused}, L{ServerAuthenticationFailed}, or the
        endpoint's connection error.
    """

    async def connect() -> Session:
        grant = await requestTicket(login, serviceName)
        factory = SessionClientFactory()
        await endpoint.connect(factory)
        try:
            return await factory.establish(grant, mind)
        except BaseException:
            factory.disconnect()
            raise

    return Deferred.fromCoroutine(connect())
