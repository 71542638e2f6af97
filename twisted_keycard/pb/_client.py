"""
The client side of a PB login with keycards: a L{pb.PBClientFactory} that
runs the login (see L{keycardLogin}) over the root object it gets.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.spread import pb

from twisted_keycard.keycard._interfaces import IAnswerer
from twisted_keycard.pb._broker import KeycardBroker
from twisted_keycard.pb._login import (
    MAX_ROUNDS,
    KeycardLogin,
    _login,
    _remoteFailure,
)


class KeycardClientFactory(pb.PBClientFactory):
    """
    A L{pb.PBClientFactory} that logs in with keycards.
    """

    protocol = KeycardBroker

    def __init__(self) -> None:
        super().__init__()

    def disconnect(self) -> None:
        """
        Close the connection, if there is one.
        """
        super().disconnect()

    def brokerLost(self, broker: pb.Broker, reason: Failure) -> None:
        """
        A connection ended: fail whoever still waits for its root object
        (a TLS handshake refused, a server that hung up), so that no login
        waits forever.
        """
        if self._broker is None or self._broker is broker:
            self._failAll(reason)

    def login(
        self,
        answerers: Sequence[IAnswerer],
        client: object = None,
        *,
        askServer: bool = False,
        maxRounds: int = MAX_ROUNDS,
    ) -> Deferred[pb.RemoteReference]:
        """
        Log in with the first keycard kind the server accepts.  An answerer
        that can bind its exchange to the connection's TLS
        (L{IChannelBindingAnswerer}) is told the connection's channel
        binding data and whether the server said it binds that kind.

        The first kind is sent at once: a server that does not take it (or
        cannot bind it to the channel) answers with the kinds it takes, and
        the client goes on with the first of its own that the server
        listed, so a login costs no round trip of its own to learn them.

        @param answerers: the keycard kinds to try, in order.
        @param client: the mind, passed to the server's realm.
        @param askServer: first ask which kinds the server takes
            (C{keycardClasses}, one round trip more), and try only those.
        @param maxRounds: challenge rounds answered at most per kind.
        @return: a L{Deferred} firing with the perspective, or failing with
            the last kind's error (L{KeycardRefused} when refused).
        """
        d = self.loginWithKeycard(
            answerers, client, askServer=askServer, maxRounds=maxRounds
        )
        return d.addCallback(lambda result: result.perspective)

    def loginWithKeycard(
        self,
        answerers: Sequence[IAnswerer],
        client: object = None,
        *,
        askServer: bool = False,
        maxRounds: int = MAX_ROUNDS,
    ) -> Deferred[KeycardLogin]:
        """
        Like L{login}, but fires with a L{KeycardLogin} that also holds the
        authenticated keycard.
        """
        return Deferred.fromCoroutine(
            self._login(list(answerers), client, askServer, maxRounds)
        ).addErrback(_remoteFailure)

    async def _login(
        self,
        answerers: list[IAnswerer],
        mind: object,
        askServer: bool,
        maxRounds: int,
    ) -> KeycardLogin:
        root: pb.RemoteReference = await self.getRootObject()
        return await _login(root, answerers, mind, askServer, maxRounds)


__all__ = ["KeycardClientFactory"]
