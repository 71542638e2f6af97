"""
The lifecycle of one client's connection to a C{KeycardRoot}, as an Automat
machine: what the connection holds, and what to do with a keycard or an
avatar that arrives after the client has gone or been told to go.

States:

  - B{connected}: no keycard held (one may be on its way: issued by the
    bouncer, its avatar being produced by the realm).
  - B{logged in}: the client holds at least one keycard.
  - B{expiring}: the bouncer expired a keycard the client holds (or one
    whose avatar is on its way); the connection is being closed.
  - B{gone}: the connection is lost; the bouncer drops its exchanges in
    progress, every avatar is logged out and every keycard removed from the
    bouncer, and whatever arrives late is undone at once.

Transitions (inputs are the methods of L{ConnectionInputs}):

  - connected, logged in loop on C{keycardIssued} and C{avatarFailed};
  - connected, logged in --avatarReady--> logged in;
  - connected, logged in --expire--> expiring, closing the transport;
  - connected, logged in, expiring --connectionLost--> gone;
  - expiring and gone loop on the other inputs: C{keycardIssued} answers
    C{False}, and an avatar that arrives is logged out and its keycard
    removed at once.

A login takes two inputs, once its keycard is issued: C{keycardIssued},
then C{avatarReady} or C{avatarFailed}.  The rounds of an exchange before
it take none; the root reads L{ConnectionCore.closing} to refuse them on a
connection that is going.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import attrs
from automat import TypeMachineBuilder
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.spread import pb

from twisted_keycard._printable import printable
from twisted_keycard.bouncer import IBouncer
from twisted_keycard.keycard import Keycard
from twisted_keycard.pb._broker import KeycardBroker

#: What a realm gives to log an avatar out.
Logout = Callable[[], object]


class ConnectionInputs(Protocol):
    """
    The events in the life of one client connection.
    """

    def keycardIssued(self, keycardId: str) -> bool:
        """
        The bouncer issued keycard C{keycardId}; the realm is asked next.

        @return: C{False} if the connection is going: the keycard is removed
            from the bouncer, and the login is over.
        """

    def avatarReady(self, keycardId: str, logout: Logout) -> bool:
        """
        The realm produced the avatar for keycard C{keycardId}.

        @return: C{True} if the client now holds the keycard; C{False} if
            the connection is going, in which case the avatar was logged out
            and the keycard removed.
        """

    def avatarFailed(self, keycardId: str) -> None:
        """
        The realm failed to produce the avatar for keycard C{keycardId}: the
        keycard is removed from the bouncer.
        """

    def expire(self, keycardId: str) -> None:
        """
        The bouncer expired keycard C{keycardId}, held or on its way: drop
        the client.
        """

    def connectionLost(self) -> None:
        """
        The connection is gone: log out and remove what it held.
        """


@dataclass
class ConnectionCore:
    """
    What the machine of one connection works with.

    @ivar holders: the root's map from keycard ids to the connections that
        hold them, shared by every connection of one root; a keycard is in
        it from its issue until its removal or expiry.
    @ivar closing: whether the connection is going (expiring or gone): no
        new exchange is started on it.
    @ivar producing: the keycards whose avatars the realm is producing.
    @ivar held: the logouts of the avatars the client holds, by keycard id.
    @ivar expired: the keycards the bouncer expired, not to be removed again.
    @ivar exchanges: the exchanges waiting for the client's answer, by the
        number the client was given: the keycard kept on this side, the
        client's mind and the flags of its first message.
    @ivar nextExchange: the number the last exchange was given.
    """

    broker: pb.Broker
    bouncer: IBouncer
    holders: dict[str, ConnectionInputs]
    log: Logger
    closing: bool = False
    producing: set[str] = field(default_factory=set)
    held: dict[str, Logout] = field(default_factory=dict)
    expired: set[str] = field(default_factory=set)
    exchanges: dict[int, tuple[Keycard, object, int]] = field(default_factory=dict)
    nextExchange: int = 0

    def keycardCount(self) -> int:
        """
        The keycards this connection holds or is being given.
        """
        return len(self.held) + len(self.producing)

    def loggedIn(self) -> None:
        """
        The client holds a keycard: the broker stops treating it as a
        stranger (see L{KeycardBroker.loggedIn}).
        """
        if isinstance(self.broker, KeycardBroker):
            self.broker.loggedIn()

    def drop(self, keycardId: str) -> None:
        """
        Close the connection, because the bouncer expired C{keycardId}.
        """
        transport = self.broker.transport
        if transport is None:
            return
        peer = transport.getPeer()
        self.log.info(
            "dropping {peer}: keycard {keycardId} expired",
            peer=printable(getattr(peer, "host", peer)),
            keycardId=printable(keycardId),
        )
        transport.loseConnection()

    def release(self, keycardId: str, logout: Logout | None) -> None:
        """
        Log an avatar out, if there is one, and remove its keycard from the
        bouncer unless the bouncer expired it.
        """
        self.producing.discard(keycardId)
        self.holders.pop(keycardId, None)
        if logout is not None:
            try:
                logout()
            except Exception:
                self.log.failure(
                    "logout of keycard {keycardId} failed",
                    keycardId=printable(keycardId),
                )
        if keycardId in self.expired:
            return
        self.bouncer.removeKeycardId(keycardId).addErrback(
            self._removeFailed, keycardId
        )

    def _removeFailed(self, failure: Failure, keycardId: str) -> None:
        # The bouncer expires the keycard by itself in the end: a warning.
        self.log.warn(
            "could not tell the bouncer that the client of keycard {keycardId}"
            " left: {error}",
            keycardId=printable(keycardId),
            error=printable(failure.getErrorMessage()),
        )


def _makeMachine() -> Callable[[ConnectionCore], ConnectionInputs]:
    machine = TypeMachineBuilder(ConnectionInputs, ConnectionCore)
    Connected = machine.state("Connected")
    LoggedIn = machine.state("LoggedIn")
    Expiring = machine.state("Expiring")
    Gone = machine.state("Gone")

    @Connected.upon(ConnectionInputs.keycardIssued).loop()
    @LoggedIn.upon(ConnectionInputs.keycardIssued).loop()
    def issued(c: ConnectionInputs, s: ConnectionCore, keycardId: str) -> bool:
        s.producing.add(keycardId)
        s.holders[keycardId] = c
        return True

    @Connected.upon(ConnectionInputs.avatarReady).to(LoggedIn)
    @LoggedIn.upon(ConnectionInputs.avatarReady).loop()
    def ready(
        c: ConnectionInputs, s: ConnectionCore, keycardId: str, logout: Logout
    ) -> bool:
        s.producing.discard(keycardId)
        s.held[keycardId] = logout
        s.loggedIn()
        return True

    @Connected.upon(ConnectionInputs.avatarFailed).loop()
    @LoggedIn.upon(ConnectionInputs.avatarFailed).loop()
    def failed(c: ConnectionInputs, s: ConnectionCore, keycardId: str) -> None:
        s.release(keycardId, None)

    @Connected.upon(ConnectionInputs.expire).to(Expiring)
    @LoggedIn.upon(ConnectionInputs.expire).to(Expiring)
    def expire(c: ConnectionInputs, s: ConnectionCore, keycardId: str) -> None:
        s.closing = True
        s.expired.add(keycardId)
        s.holders.pop(keycardId, None)
        s.drop(keycardId)

    @Connected.upon(ConnectionInputs.connectionLost).to(Gone)
    @LoggedIn.upon(ConnectionInputs.connectionLost).to(Gone)
    @Expiring.upon(ConnectionInputs.connectionLost).to(Gone)
    def lost(c: ConnectionInputs, s: ConnectionCore) -> None:
        s.closing = True
        s.exchanges.clear()
        s.bouncer.connectionLost(s.broker)
        held, s.held = s.held, {}
        for keycardId, logout in held.items():
            s.release(keycardId, logout)

    # Going or gone: what arrives late is undone.

    @Expiring.upon(ConnectionInputs.keycardIssued).loop()
    @Gone.upon(ConnectionInputs.keycardIssued).loop()
    def issuedTooLate(c: ConnectionInputs, s: ConnectionCore, keycardId: str) -> bool:
        s.release(keycardId, None)
        return False

    @Expiring.upon(ConnectionInputs.avatarReady).loop()
    @Gone.upon(ConnectionInputs.avatarReady).loop()
    def readyTooLate(
        c: ConnectionInputs, s: ConnectionCore, keycardId: str, logout: Logout
    ) -> bool:
        s.release(keycardId, logout)
        return False

    @Expiring.upon(ConnectionInputs.avatarFailed).loop()
    @Gone.upon(ConnectionInputs.avatarFailed).loop()
    def failedTooLate(c: ConnectionInputs, s: ConnectionCore, keycardId: str) -> None:
        s.release(keycardId, None)

    @Expiring.upon(ConnectionInputs.expire).loop()
    @Gone.upon(ConnectionInputs.expire).loop()
    def expireAgain(c: ConnectionInputs, s: ConnectionCore, keycardId: str) -> None:
        s.expired.add(keycardId)
        s.holders.pop(keycardId, None)

    Gone.upon(ConnectionInputs.connectionLost).loop().returns(None)

    return machine.build()


#: Builds the machine of one connection around its L{ConnectionCore}.
ConnectionMachine = _makeMachine()


@attrs.frozen
class ClientConnection:
    """
    One client connection of a C{KeycardRoot}: its machine, to feed events
    to, and its core, to read what it holds.
    """

    core: ConnectionCore
    inputs: ConnectionInputs

    @classmethod
    def new(
        cls,
        broker: pb.Broker,
        bouncer: IBouncer,
        holders: dict[str, ConnectionInputs],
        log: Logger,
    ) -> ClientConnection:
        """
        The lifecycle of a new connection, in state B{connected}.

        @param holders: see L{ConnectionCore.holders}.
        @param log: where its decisions are logged.
        """
        core = ConnectionCore(broker, bouncer, holders, log)
        return cls(core, ConnectionMachine(core))
