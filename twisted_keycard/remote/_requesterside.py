"""
The requester's side of a remote bouncer: an L{IBouncer} over a PB
connection to the bouncer service, so that a L{KeycardRoot} uses it as it
would an in-process bouncer.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from twisted.application.internet import ClientService
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.logger import Logger
from twisted.spread import pb
from zope.interface import implementer

from twisted_keycard._printable import printable
from twisted_keycard.bouncer import IBouncer, IRequester
from twisted_keycard.error import KeycardDenied
from twisted_keycard.keycard import IAnswerer, Keycard, keycardClassFor
from twisted_keycard.pb import KeycardClientFactory, localError, reconnectPolicy
from twisted_keycard.remote._bouncerside import MAX_IDS

#: Keycard ids sent in one keepAlive, adopt or removal call: well under the
#: service's budget for one message (a MiB) and its cap of L{MAX_IDS}.
BATCH = 8192

#: Seconds over which, after a reconnection, the clients of the keycards
#: the bouncer no longer knows are dropped, by default.
DROP_SPREAD = 30.0

#: Drops a spread is made of, at most: each drops its share of the clients.
SPREAD_STEPS = 100


def batches(keycardIds: Sequence[str]) -> list[list[str]]:
    """
    C{keycardIds} in lists of at most L{BATCH}.
    """
    return [list(keycardIds[i : i + BATCH]) for i in range(0, len(keycardIds), BATCH)]


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

    It logs in to the bouncer service with its own keycard kinds and
    reconnects with backoff when the connection drops.  After each
    reconnection it offers the bouncer the keycard ids its requesters'
    clients still hold, and drops the clients of the ids the bouncer does
    not take back: at once those revoked while it was away; the others
    (expired, or lost after a long outage) spread over C{dropSpread}
    seconds, in random order, so that they do not all log in again at
    once.  It then tells the bouncer which clients left while it was
    away.

    Its own keycard is renewed by the service's listener (a L{KeycardRoot})
    while its connection lives, within the service bouncer's C{maxLifetime}.

    It waits at most a few seconds between attempts (L{reconnectPolicy}),
    so it is back within seconds of its bouncer.  Until it has logged in
    once it knows no keycard kinds, and a L{KeycardRoot} on it denies
    logins ("the bouncer is not reachable yet"); after that, while the
    bouncer is away, they are denied as unreachable.

    @ivar clock: the clock the requester's L{KeycardRoot} times renewals
        with, unless it is given one.
    @ivar dropSpread: seconds over which the clients of keycards the
        bouncer did not take back, and did not say are revoked, are dropped
        after a reconnection; 0 drops them at once.
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
        dropSpread: float = DROP_SPREAD,
    ) -> None:
        if not dropSpread >= 0:
            raise ValueError(f"dropSpread must be 0 or more, not {dropSpread!r}")
        self.name = name
        self.clock = clock
        self.dropSpread = dropSpread
        #: The drops of a spread still to come.
        self._spread: list[IDelayedCall] = []
        self.keycardClasses: tuple[type[Keycard], ...] = ()
        self._answerers = list(answerers)
        self._requesters: dict[str, IRequester] = {}
        self._factory = KeycardClientFactory()
        self._retryPolicy = (
            retryPolicy if retryPolicy is not None else reconnectPolicy()
        )
        self._whenConnected: list[Deferred[None]] = []
        #: Logins refused or failed in a row, for the backoff.
        self._failedLogins = 0
        self._service = ClientService(
            endpoint,
            self._factory,
            retryPolicy=self._retryDelay,
            clock=clock,
            prepareConnection=self._prepare,
        )
        self._perspective: pb.RemoteReference | None = None
        #: Ids whose clients left while the bouncer was unreachable, to
        #: remove once it is back (at most L{MAX_IDS}; the others expire).
        self._leftWhileAway: dict[str, None] = {}
        #: Tokens that stand for the requester's client connections.
        self._connections: dict[Hashable, str] = {}

    def startService(self) -> None:
        self._service.startService()

    def stopService(self) -> Deferred[None]:
        """
        Stop connecting, close the connection, and fail whoever waits in
        L{whenConnected} with L{CancelledError}; safe at any moment,
        logging in included.
        """
        waiting, self._whenConnected = self._whenConnected, []
        for d in waiting:
            d.errback(CancelledError())
        spread, self._spread = self._spread, []
        for call in spread:
            if call.active():
                call.cancel()
        stopped: Deferred[None] = self._service.stopService()
        return stopped

    def whenConnected(self) -> Deferred[None]:
        """
        Fire when the requester is logged in to the bouncer and has offered
        it its clients' keycards: at once if it is now, else at the next
        login.

        @return: a L{Deferred} firing with C{None}, or failing with
            L{CancelledError} if the service stops first.
        """
        if self._perspective is not None and not self._perspective.broker.disconnected:
            return succeed(None)
        waiting: Deferred[None] = Deferred()
        self._whenConnected.append(waiting)
        return waiting

    def _retryDelay(self, attempt: int) -> float:
        """
        The backoff before connecting again, counting the failed logins too
        (a connection whose login failed counts as made for the
        L{ClientService}).
        """
        return self._retryPolicy(max(attempt, self._failedLogins))

    def _prepare(self, broker: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(self._loginOrDrop(broker))

    async def _loginOrDrop(self, broker: Any) -> None:
        """
        Log in and resynchronize; on failure, close the connection, so that
        the L{ClientService} connects again after its backoff (it would
        leave the connection open if C{prepareConnection} failed).
        """
        try:
            await self._loginAndResync()
        except CancelledError:
            # Stopped while logging in: the ClientService closes the
            # connection; a login that "succeeded" would restart it.
            raise
        except Exception as e:
            self._failedLogins += 1
            self.log.warn(
                "could not log in to the bouncer: {error}",
                error=printable(str(e)),
            )
            transport = broker.transport
            if transport is not None:
                transport.loseConnection()
            return
        self._failedLogins = 0

    async def _loginAndResync(self) -> None:
        perspective = await self._factory.login(self._answerers, _Mind(self))
        tags = await perspective.callRemote("keycardClasses")
        self.keycardClasses = tuple(
            cls for tag in tags if (cls := keycardClassFor(tag)) is not None
        )
        held = self._heldIds()
        refused: list[str] = []
        for batch in batches(held):
            taken = await perspective.callRemote("adopt", batch)
            if isinstance(taken, list):
                kept = set(taken)
                refused.extend(k for k in batch if k not in kept)
        self._perspective = perspective
        self.log.info(
            "connected to the bouncer; resent {count} ids, {refused} refused",
            count=len(held),
            refused=len(refused),
        )
        if refused:
            # Revoked, expired or lost while this requester was away.
            await self._dropRefused(perspective, refused)
        await self._removeLeft(perspective)
        waiting, self._whenConnected = self._whenConnected, []
        for d in waiting:
            d.callback(None)

    async def _dropRefused(
        self, perspective: pb.RemoteReference, refused: list[str]
    ) -> None:
        """
        Drop the clients of keycards the bouncer did not take back: at once
        those it says are revoked (all of them, from a bouncer that cannot
        say), the others over L{dropSpread} seconds.
        """
        revoked: set[str] = set()
        try:
            for batch in batches(refused):
                answer = await perspective.callRemote("revokedOf", batch)
                if isinstance(answer, list):
                    revoked.update(k for k in answer if isinstance(k, str))
        except Exception:
            # An older bouncer: no spread, as before.
            revoked = set(refused)
        if revoked:
            self._expired([k for k in refused if k in revoked])
        rest = [k for k in refused if k not in revoked]
        if not rest:
            return
        if self.dropSpread == 0 or len(rest) == 1:
            self._expired(rest)
            return
        random.shuffle(rest)
        steps = min(len(rest), SPREAD_STEPS)
        self.log.info(
            "dropping {count} clients whose keycards the bouncer no longer"
            " knows, over {seconds} s",
            count=len(rest),
            seconds=self.dropSpread,
        )
        for step in range(steps):
            share = rest[step * len(rest) // steps : (step + 1) * len(rest) // steps]
            self._spread.append(
                self.clock.callLater(
                    self.dropSpread * step / steps, self._dropShare, share
                )
            )

    def _dropShare(self, keycardIds: list[str]) -> None:
        self._spread = [call for call in self._spread if call.active()]
        self._expired(keycardIds)

    def _heldIds(self) -> list[str]:
        return list(
            dict.fromkeys(k for r in self._requesters.values() for k in r.keycardIds())
        )

    async def _removeLeft(self, perspective: pb.RemoteReference) -> None:
        """
        Remove the keycards whose clients left while the bouncer was away,
        so that their seats and quota come back now rather than at expiry.
        """
        held = set(self._heldIds())
        left = [k for k in self._leftWhileAway if k not in held]
        self._leftWhileAway.clear()
        for keycardId in left:
            await perspective.callRemote("removeKeycardId", keycardId).addErrback(
                lambda f: None
            )

    async def _call(self, method: str, *args: object) -> Any:
        perspective = self._perspective
        if perspective is None or perspective.broker.disconnected:
            self._perspective = None
            raise KeycardDenied("the bouncer is unreachable; try again later")
        return await perspective.callRemote(method, *args).addErrback(localError)

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
        return Deferred.fromCoroutine(self._remove(keycardId))

    async def _remove(self, keycardId: str) -> bool:
        try:
            removed: bool = await self._call("removeKeycardId", keycardId)
        except KeycardDenied:
            if len(self._leftWhileAway) < MAX_IDS:
                self._leftWhileAway[keycardId] = None
            raise
        return removed

    def expireKeycardIds(self, keycardIds: Sequence[str]) -> Deferred[int]:
        """
        Expire keycards on this side only: a requester cannot make the
        bouncer expire keycards.
        """
        self._expired(list(keycardIds))
        return succeed(len(keycardIds))

    def keepAlive(self, requesterName: str, keycardIds: Sequence[str]) -> Deferred[int]:
        """
        Renew keycards this requester's clients hold, in batches; the
        service knows the requester by its login, not by C{requesterName}.
        """
        return Deferred.fromCoroutine(self._keepAlive(keycardIds))

    async def _keepAlive(self, keycardIds: Sequence[str]) -> int:
        renewed = 0
        # An empty call still tells whether this avatar may renew.
        for batch in batches(keycardIds) or [[]]:
            renewed += await self._call("keepAlive", batch)
        return renewed

    def _expired(self, keycardIds: list[str]) -> None:
        for requester in list(self._requesters.values()):
            requester.expireKeycardIds(keycardIds)
