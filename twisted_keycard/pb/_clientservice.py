"""
A PB client that stays logged in with keycards: it connects, logs in on
every new connection, and hands the application each new perspective.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import MultiService
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    fail,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import (
    IReactorTime,
    ISSLTransport,
    IStreamClientEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.spread import pb

from twisted_keycard._printable import printable
from twisted_keycard.error import ServerAuthenticationFailed
from twisted_keycard.keycard import IAnswerer, serverVerified
from twisted_keycard.pb._broker import KeycardBroker
from twisted_keycard.pb._client import MAX_ROUNDS, KeycardLogin, keycardLogin
from twisted_keycard.tokens import TokenAnswerer

#: The errors after which the service stops trying: the server could not
#: prove itself, so it may not be the server at all.
FATAL = (ServerAuthenticationFailed,)

#: The longest wait between two connection attempts by default, in
#: seconds (before jitter): a server back from an outage sees its clients
#: again within seconds, where Twisted's default waits up to a minute.
MAX_RETRY_DELAY = 3.0


def reconnectPolicy(
    maxDelay: float = MAX_RETRY_DELAY, initialDelay: float = 0.25
) -> Callable[[int], float]:
    """
    The wait before each new connection: C{initialDelay} doubled at each
    failure in a row, up to C{maxDelay}, plus a random jitter of up to half
    a second, so that the clients of a server that comes back do not all
    connect in the same instant.  The default of L{KeycardClientService}
    and L{twisted_keycard.remote.RemoteBouncer}.

    @raise ValueError: unless both delays are positive and C{initialDelay}
        is at most C{maxDelay}.
    """
    if not 0 < initialDelay <= maxDelay:
        raise ValueError("the delays must be positive, the initial one the smaller")
    return backoffPolicy(
        initialDelay=initialDelay,
        maxDelay=maxDelay,
        factor=2.0,
        jitter=lambda: random.uniform(0, 0.5),  # noqa: S311 - a delay, not a secret
    )


class _LoginFactory(pb.PBClientFactory):
    """
    Builds the broker of each connection and starts its login.
    """

    protocol = KeycardBroker

    def __init__(self, connected: Callable[[pb.Broker], None]) -> None:
        super().__init__()
        self._connected = connected

    def clientConnectionMade(self, broker: pb.Broker) -> None:
        self._connected(broker)


class KeycardClientService(MultiService):
    """
    Keeps one PB connection to a keycard server logged in.

    On every new connection it logs in with its answerers (see
    L{keycardLogin}) and calls C{onLogin} with the L{KeycardLogin}.  A
    refused or denied login, a login that fails otherwise, and a lost
    connection all lead to a new connection after a delay that grows with
    each failure in a row (C{retryPolicy}); a server that cannot prove
    itself (L{ServerAuthenticationFailed}) stops the service's attempts.

    When the server issued a token with the last keycard, the next
    connection presents it first (C{reuseToken}): one round trip and no
    password work on either side.  A token the server refuses (expired,
    revoked, or signed by a retired key) is forgotten and the answerers
    follow on the same connection.  Over TLS the token is presented only
    to a server the client verified (L{serverVerified}); over a connection
    without TLS, only where it came in clear too.

    @ivar current: the login of the current connection, if logged in.
    @ivar stoppedBy: the failure that stopped the attempts, if one did.
    """

    log = Logger()

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        answerers: Sequence[IAnswerer],
        onLogin: Callable[[KeycardLogin], object] | None = None,
        mind: object = None,
        *,
        retryPolicy: Callable[[int], float] | None = None,
        clock: IReactorTime | None = None,
        askServer: bool = False,
        maxRounds: int = MAX_ROUNDS,
        reuseToken: bool = True,
        waitForSeat: float | None = None,
        onPlace: Callable[[int, int], object] | None = None,
    ) -> None:
        """
        @param endpoint: where the server is.
        @param answerers: the keycard kinds to log in with, in order.
        @param onLogin: called with each new L{KeycardLogin}; a failure it
            returns or raises is logged.
        @param mind: passed to the server's realm at each login.
        @param retryPolicy: seconds to wait before the next connection,
            given the failures in a row (failed connections and failed
            logins); L{reconnectPolicy()} by default (at most 3 s and half
            a second of jitter).
        @param clock: times the retries; the global reactor by default.
        @param askServer: see L{keycardLogin}.
        @param maxRounds: see L{keycardLogin}.
        @param reuseToken: log in again with the token of the last login,
            when the server issued one (the default), before the
            answerers.
        @param waitForSeat: seconds each login waits in the queue of a full
            seat pool (see L{KeycardClientFactory.login}); a connection
            lost while waiting is followed by a new one whose login
            presents the queue ticket (L{seatTicket}), so the place is kept
            within the server's grace.  C{None}: a full pool refuses the
            login, which is tried again after the retry delay.
        @param onPlace: called with C{(place, waiting)} as the place moves.
        """
        super().__init__()
        self.endpoint = endpoint
        self.answerers = list(answerers)
        self.onLogin = onLogin
        self.mind = mind
        self.askServer = askServer
        self.maxRounds = maxRounds
        self.reuseToken = reuseToken
        self.waitForSeat = waitForSeat
        self.onPlace = onPlace
        #: The queue ticket of a login waiting for a seat, kept across
        #: connections.
        self.seatTicket: str | None = None
        self._clock = clock
        #: The token of the last login, and whether it came over TLS.
        self._token: tuple[str, bool] | None = None
        self.current: KeycardLogin | None = None
        self.stoppedBy: Failure | None = None
        self._policy = retryPolicy if retryPolicy is not None else reconnectPolicy()
        self._failedLogins = 0
        self._login: Deferred[KeycardLogin] | None = None
        self._waiting: list[Deferred[KeycardLogin]] = []
        self._client = ClientService(
            endpoint,
            _LoginFactory(self._connected),
            retryPolicy=self._delay,
            clock=clock,
        )
        self._client.setServiceParent(self)

    def _delay(self, failedConnections: int) -> float:
        """
        The wait before the next connection: the policy's, counting failed
        logins as failed connections.
        """
        return self._policy(failedConnections + self._failedLogins)

    def whenLoggedIn(self) -> Deferred[KeycardLogin]:
        """
        The current login, or the next one.

        @return: a L{Deferred} firing with a L{KeycardLogin}, or failing
            with the failure that stopped the service's attempts, or with
            L{CancelledError} if the service stops first.
        """
        if self.current is not None:
            return succeed(self.current)
        if self.stoppedBy is not None:
            return fail(self.stoppedBy)
        waiting: Deferred[KeycardLogin] = Deferred()
        self._waiting.append(waiting)
        return waiting

    def _connected(self, broker: pb.Broker) -> None:
        root = broker.remoteForName("root")
        answerers = self.answerers
        token = self._token
        if token is not None and self._mayPresent(token[1], broker.transport):
            answerers = [TokenAnswerer(token[0]), *answerers]
        login = keycardLogin(
            root,
            answerers,
            self.mind,
            askServer=self.askServer,
            maxRounds=self.maxRounds,
            waitForSeat=self.waitForSeat,
            onPlace=self.onPlace,
            seatTicket=self.seatTicket,
            onTicket=self._keepTicket,
            clock=self._clock,
        )
        self._login = login
        login.addCallbacks(self._loggedIn, self._loginFailed, errbackArgs=(broker,))

    def _keepTicket(self, ticket: str | None) -> None:
        self.seatTicket = ticket

    @staticmethod
    def _mayPresent(overTLS: bool, transport: object) -> bool:
        """
        Whether a token may be presented on C{transport}: over TLS to a
        server the client verified, and without TLS only a token that came
        without TLS (so one an eavesdropper could read already).
        """
        if ISSLTransport.providedBy(transport):
            return serverVerified(transport)
        return not overTLS

    def _loggedIn(self, login: KeycardLogin) -> None:
        self._login = None
        self._failedLogins = 0
        self.current = login
        token = login.keycard.token
        if self.reuseToken and token is not None:
            transport = login.perspective.broker.transport
            self._token = (token, ISSLTransport.providedBy(transport))
        else:
            self._token = None
        login.perspective.notifyOnDisconnect(lambda _: self._lost(login))
        self.log.info(
            "logged in to {endpoint} as {avatarId}",
            endpoint=repr(self.endpoint),
            avatarId=printable(login.keycard.avatarId),
        )
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(login)
        if self.onLogin is not None:
            maybeDeferred(self.onLogin, login).addErrback(
                lambda f: self.log.failure("onLogin failed", f)
            )

    def _lost(self, login: KeycardLogin) -> None:
        if self.current is login:
            self.current = None

    def _loginFailed(self, failure: Failure, broker: pb.Broker) -> None:
        self._login = None
        self._token = None
        if failure.check(CancelledError):
            return
        if failure.check(*FATAL):
            self.log.error(
                "{endpoint} could not prove it is the server: {error};"
                " not trying again",
                endpoint=repr(self.endpoint),
                error=printable(failure.getErrorMessage()),
            )
            self.stoppedBy = failure
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.errback(failure)
            self._client.stopService()
            return
        self._failedLogins += 1
        self.log.info(
            "login to {endpoint} failed ({failures} in a row): {error}",
            endpoint=repr(self.endpoint),
            failures=self._failedLogins,
            error=printable(f"{_errorName(failure)}: {failure.getErrorMessage()}"),
        )
        transport = broker.transport
        if transport is not None:
            transport.loseConnection()

    def stopService(self) -> Deferred[None]:
        """
        Stop logging in and close the connection; whoever waits for a login
        gets a L{CancelledError}.
        """
        if self._login is not None:
            self._login.cancel()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(CancelledError())
        self.current = None
        stopped: Deferred[Any] = super().stopService()
        return stopped


def _errorName(failure: Failure) -> str:
    """
    The class name of a failure's error, the server's for a copied one.
    """
    name = failure.type if isinstance(failure, pb.CopiedFailure) else None
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    if isinstance(name, str):
        return name.rpartition(".")[2]
    assert failure.type is not None
    return failure.type.__name__
