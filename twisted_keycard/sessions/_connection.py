"""
The lifecycle of one client connection to a C{SessionRoot}, as an Automat
machine.

States:

  - B{fresh}: connected, in "auth" mode: only C{open} is taken.
  - B{opening}: the service is redeeming the client's ticket.
  - B{opened}: the service answered with its proof; only C{confirm} is
    taken.
  - B{confirming}: the connection is sealed; the bouncer and the realm are
    asked for the session and the avatar.
  - B{established}: the client has its perspective; every message is
    sealed, and the session is reaped when idle.
  - B{closing}: a step was refused or the session ended; the connection is
    being closed, and what arrives late is undone.
  - B{gone}: the connection is lost; the avatar is logged out and the
    bouncer told the session ended.

Auth mode is left once: C{open} or C{confirm} anywhere else refuses them
and closes the connection, ending any session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import attrs
from automat import TypeMachineBuilder
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from twisted_keycard._printable import printable
from twisted_keycard.sessions._broker import SessionBroker
from twisted_keycard.sessions._interfaces import ITicketRedeemer
from twisted_keycard.sessions._keys import SessionKeys, Transcript
from twisted_keycard.sessions._records import SessionGrant

#: What a realm gives to log an avatar out.
Logout = Callable[[], object]


@dataclass
class Pending:
    """
    A session being set up: the redeemed ticket, the transcript, the keys
    and the service's proof.
    """

    grant: SessionGrant
    transcript: Transcript
    keys: SessionKeys
    proof: bytes


class Sessions(Protocol):
    """
    What a connection needs of its root.
    """

    redeemer: ITicketRedeemer
    clock: IReactorTime
    idleTimeout: float
    log: Logger

    def _track(self, sessionId: str, inputs: SessionInputs) -> None: ...

    def _untrack(self, sessionId: str) -> None: ...


class SessionInputs(Protocol):
    """
    The events in the life of one connection to a session root.
    """

    def beginOpen(self) -> bool:
        """
        C{open} was called.

        @return: C{False} if it must be refused (not in auth mode).
        """

    def redeemed(self, pending: Pending) -> bool:
        """
        The bouncer redeemed the ticket.

        @return: C{False} if the connection is going.
        """

    def beginConfirm(self) -> Pending | None:
        """
        C{confirm} was called.

        @return: the session being set up, or C{None} if the call must be
            refused.
        """

    def established(self, logout: Logout) -> bool:
        """
        The bouncer confirmed the session and the realm gave its avatar.

        @return: C{False} if the connection is going: the avatar is logged
            out at once.
        """

    def refuse(self, reason: str) -> None:
        """
        A step was refused: close the connection once the refusal is sent.
        """

    def end(self, reason: str) -> None:
        """
        End the session: revoked, idle, broken, or a step taken again.
        """

    def connectionLost(self) -> None:
        """
        The connection is gone.
        """


@dataclass
class SessionCore:
    """
    What the machine of one connection works with.

    @ivar sessionId: the ticket's id, once C{confirm} was called.
    @ivar lastSeen: when the client last sent an intact sealed message.
    """

    broker: SessionBroker
    root: Sessions
    pending: Pending | None = None
    sessionId: str | None = None
    logout: Logout | None = None
    timer: IDelayedCall | None = None
    lastSeen: float = 0.0
    finished: bool = False

    def touch(self) -> None:
        self.lastSeen = self.root.clock.seconds()

    def close(self, reason: str) -> None:
        """
        Close the connection once what was written is sent (a refusal).
        """
        transport = self.broker.transport
        if transport is None or self.broker.disconnected:
            return
        peer = transport.getPeer()
        self.root.log.info(
            "closing session connection from {peer}: {reason}",
            peer=printable(getattr(peer, "host", peer)),
            reason=reason,
        )
        self.root.clock.callLater(0, transport.loseConnection)

    def startIdle(self, reap: Callable[[], None]) -> None:
        self.touch()
        timeout = self.root.idleTimeout

        def check() -> None:
            idle = self.root.clock.seconds() - self.lastSeen
            if idle >= timeout:
                self.timer = None
                reap()
            else:
                self.timer = self.root.clock.callLater(timeout - idle, check)

        self.timer = self.root.clock.callLater(timeout, check)

    def finish(self) -> None:
        """
        Log the avatar out, if there is one, and tell the bouncer the
        session ended, once.
        """
        if self.logout is not None:
            logout, self.logout = self.logout, None
            try:
                logout()
            except Exception:
                self.root.log.failure("logout of a session failed")
        if self.finished:
            return
        self.finished = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if self.sessionId is not None:
            self.root.log.info(
                "session {sessionId} closed",
                event="session.closed",
                sessionId=printable(self.sessionId),
            )
            self.root._untrack(self.sessionId)
            d = self.root.redeemer.ended([self.sessionId])
            d.addErrback(
                lambda f: self.root.log.warn(
                    "could not tell the bouncer a session ended: {error}",
                    error=printable(f.getErrorMessage()),
                )
            )


def _makeMachine() -> Callable[[SessionCore], SessionInputs]:
    machine = TypeMachineBuilder(SessionInputs, SessionCore)
    Fresh = machine.state("Fresh")
    Opening = machine.state("Opening")
    Opened = machine.state("Opened")
    Confirming = machine.state("Confirming")
    Established = machine.state("Established")
    Closing = machine.state("Closing")
    Gone = machine.state("Gone")
    live = [Fresh, Opening, Opened, Confirming, Established]

    Fresh.upon(SessionInputs.beginOpen).to(Opening).returns(True)

    @Opening.upon(SessionInputs.redeemed).to(Opened)
    def redeemed(c: SessionInputs, s: SessionCore, pending: Pending) -> bool:
        s.pending = pending
        return True

    @Opened.upon(SessionInputs.beginConfirm).to(Confirming)
    def confirming(c: SessionInputs, s: SessionCore) -> Pending | None:
        pending = s.pending
        assert pending is not None
        s.pending = None
        s.sessionId = pending.grant.ticketId
        s.root._track(s.sessionId, c)
        return pending

    @Confirming.upon(SessionInputs.established).to(Established)
    def established(c: SessionInputs, s: SessionCore, logout: Logout) -> bool:
        s.logout = logout
        s.startIdle(lambda: c.end("idle"))
        s.broker.loggedIn()
        return True

    # Leaving auth mode is for good: open or confirm out of turn, a
    # refusal or an end closes the connection.

    def again(c: SessionInputs, s: SessionCore) -> bool:
        s.close("a step out of order")
        return False

    def againConfirm(c: SessionInputs, s: SessionCore) -> Pending | None:
        s.close("a step out of order")
        return None

    def closing(c: SessionInputs, s: SessionCore, reason: str) -> None:
        s.close(reason)

    for state in live:
        state.upon(SessionInputs.refuse).to(Closing)(closing)
        state.upon(SessionInputs.end).to(Closing)(closing)
        if state is not Fresh:
            state.upon(SessionInputs.beginOpen).to(Closing)(again)
        if state is not Opened:
            state.upon(SessionInputs.beginConfirm).to(Closing)(againConfirm)

    def lost(c: SessionInputs, s: SessionCore) -> None:
        s.finish()

    for state in [*live, Closing]:
        state.upon(SessionInputs.connectionLost).to(Gone)(lost)

    # Going or gone: nothing new starts, and what arrives late is undone.

    def tooLate(c: SessionInputs, s: SessionCore, logout: Logout) -> bool:
        s.logout = logout
        s.finish()
        return False

    for state in (Closing, Gone):
        state.upon(SessionInputs.beginOpen).loop().returns(False)
        state.upon(SessionInputs.redeemed).loop().returns(False)
        state.upon(SessionInputs.beginConfirm).loop().returns(None)
        state.upon(SessionInputs.established).loop()(tooLate)
        state.upon(SessionInputs.refuse).loop().returns(None)
        state.upon(SessionInputs.end).loop().returns(None)
    Gone.upon(SessionInputs.connectionLost).loop().returns(None)

    return machine.build()


#: Builds the machine of one connection around its L{SessionCore}.
SessionMachine = _makeMachine()


@attrs.frozen
class SessionConnection:
    """
    One client connection of a C{SessionRoot}: its machine, to feed events
    to, and its core, to read what it holds.
    """

    core: SessionCore
    inputs: SessionInputs

    @classmethod
    def new(cls, broker: SessionBroker, root: Sessions) -> SessionConnection:
        """
        The lifecycle of a new connection, in state B{fresh}.
        """
        core = SessionCore(broker, root)
        return cls(core, SessionMachine(core))
