"""
The PB server factory for keycard logins, and the guard that applies the
connection limits to its brokers: a deadline to log in, caps on
connections not logged in, in all and per client address.
"""

from __future__ import annotations

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import LogLevel
from twisted.spread import pb
from twisted.spread.flavors import IPBRoot

from twisted_keycard.pb._broker import ConnectionLimits, KeycardBroker
from twisted_keycard.pb._budget import TOO_MANY, ConnectionBudget


@attrs.define(eq=False)
class _Entry:
    """
    What the guard knows of one connection.
    """

    timer: IDelayedCall | None = None
    lastReceived: float = 0.0
    loggedIn: bool = False


class ConnectionGuard:
    """
    Applies L{ConnectionLimits} to the brokers of one server factory: it
    admits, or refuses, each new connection within a L{ConnectionBudget}
    (the factory's own, or one shared with the service's other faces),
    drops those that do not log in in time (and, if asked, logged-in ones
    that go silent), and rations the log lines each client address causes.
    """

    def __init__(
        self,
        limits: ConnectionLimits,
        clock: IReactorTime,
        budget: ConnectionBudget | None = None,
    ) -> None:
        """
        @param budget: the budget of connections not logged in to count
            this factory's in; a new one of C{limits} if C{None}.
        """
        self.limits = limits
        #: Whether brokers tell L{received} of every message (only when
        #: logged-in connections have an idle timeout).
        self.watchesIdle = limits.idleTimeout is not None
        self._clock = clock
        self.budget = ConnectionBudget(limits, clock) if budget is None else budget
        self._entries: dict[KeycardBroker, _Entry] = {}

    def unauthenticated(self, group: str | None = None) -> int:
        """
        Connections not logged in, in all or from one address group, on
        every face that shares the budget.
        """
        return self.budget.unauthenticated(group)

    def admit(self, address: object) -> str | None:
        """
        Make room for a new connection from C{address} (an L{IAddress}), or
        refuse it (see L{ConnectionBudget.admit}).

        @return: the client address group to L{track} the connection's
            broker under, or C{None} if the connection must be refused.
        """
        return self.budget.admit(address)

    def track(self, broker: KeycardBroker, group: str) -> None:
        """
        Apply the limits on strangers to an admitted connection's broker
        until it logs in.
        """
        limits = self.limits
        entry = self._entries[broker] = _Entry()
        self.budget.enter(broker, group)
        timeout = limits.loginTimeout
        if timeout is not None:
            entry.timer = self._clock.callLater(timeout, self._loginTimedOut, broker)
        broker.useBudget(limits.loginBudget, limits.loginMessages, quiet=True)
        broker.guard = self

    def loggedIn(self, broker: KeycardBroker) -> None:
        """
        C{broker}'s client now holds a keycard: lift the login deadline and
        budget, and start the idle timeout if there is one.
        """
        entry = self._entries.get(broker)
        if entry is None or entry.loggedIn:
            return
        self._unlist(broker, entry)
        entry.loggedIn = True
        broker.useBudget(self.limits.budget, None, quiet=False)
        idle = self.limits.idleTimeout
        if idle is not None:
            entry.lastReceived = self._clock.seconds()
            entry.timer = self._clock.callLater(idle, self._idleCheck, broker)

    def received(self, broker: KeycardBroker) -> None:
        """
        C{broker} received bytes: it is not idle.
        """
        entry = self._entries.get(broker)
        if entry is not None:
            entry.lastReceived = self._clock.seconds()

    def lost(self, broker: KeycardBroker) -> None:
        """
        C{broker}'s connection is gone: forget it.
        """
        self._forget(broker)

    def evicted(self, broker: KeycardBroker) -> None:
        """
        The budget closed C{broker} for a newer connection: forget it.
        """
        self._forget(broker)

    def note(
        self, group: str, format: str, level: LogLevel = LogLevel.info, **fields: object
    ) -> None:
        """
        Log a line about client address C{group}, unless it had its share
        of lines in the current window (see L{ConnectionBudget.note}).
        """
        self.budget.note(group, format, level, **fields)

    def _loginTimedOut(self, broker: KeycardBroker) -> None:
        entry = self._entries.get(broker)
        if entry is None or entry.loggedIn:
            return
        entry.timer = None
        broker.drop(
            "dropping {peer}: no login within {timeout} s",
            timeout=self.limits.loginTimeout,
        )
        self._forget(broker)

    def _idleCheck(self, broker: KeycardBroker) -> None:
        entry = self._entries.get(broker)
        idle = self.limits.idleTimeout
        if entry is None or idle is None:
            return
        silent = self._clock.seconds() - entry.lastReceived
        if silent < idle:
            entry.timer = self._clock.callLater(idle - silent, self._idleCheck, broker)
            return
        entry.timer = None
        broker.drop("closing {peer}: silent for {idle} s", idle=idle, abort=False)
        self._forget(broker)

    def _unlist(self, broker: KeycardBroker, entry: _Entry) -> None:
        """
        Take C{broker} off the connections not logged in, and stop its
        timer.
        """
        if entry.timer is not None and entry.timer.active():
            entry.timer.cancel()
        entry.timer = None
        self.budget.leave(broker)

    def _forget(self, broker: KeycardBroker) -> None:
        entry = self._entries.pop(broker, None)
        if entry is not None:
            self._unlist(broker, entry)


class KeycardServerFactory(pb.PBServerFactory):
    """
    A L{pb.PBServerFactory} whose brokers bound what a stranger may cost
    the server (see L{ConnectionLimits}: a login deadline, caps on
    connections not logged in, a budget for each message) and answer
    malformed messages without a logged traceback.

    A connection counts as logged in once L{KeycardRoot} gives it a
    keycard; a root of another kind calls L{KeycardBroker.loggedIn} on the
    connection's broker when its client has logged in, or the connection
    stays a stranger's, dropped at the login deadline.

    A connection refused for a cap is told so (L{TOO_MANY}) before it is
    closed: a L{KeycardClientFactory} fails its login with
    L{KeycardDenied}.
    """

    protocol = KeycardBroker

    def __init__(
        self,
        root: IPBRoot,
        maxMessage: int | None = None,
        *,
        limits: ConnectionLimits = ConnectionLimits(),  # noqa: B008 - frozen
        clock: IReactorTime | None = None,
        budget: ConnectionBudget | None = None,
    ) -> None:
        """
        @param maxMessage: bytes of one message after login, at most: a
            shorthand for the C{bytes} of C{limits.budget}; it also lowers
            the login budget's if smaller.
        @param limits: the limits on each connection.
        @param clock: times the deadlines; the global reactor if C{None}.
        @param budget: the budget of connections not logged in, shared
            with the service's other faces; one of C{limits}' caps if
            C{None}.  A shared budget's own limits set the caps.
        """
        super().__init__(root)
        if maxMessage is not None:
            limits = attrs.evolve(
                limits,
                budget=attrs.evolve(limits.budget, bytes=maxMessage),
                loginBudget=attrs.evolve(
                    limits.loginBudget,
                    bytes=min(maxMessage, limits.loginBudget.bytes),
                ),
            )
        self.maxMessage = maxMessage
        self.limits = limits
        if clock is None:
            from twisted.internet import reactor  # the outermost default

            clock = reactor
        self.guard = ConnectionGuard(limits, clock, budget)

    def buildProtocol(self, addr: object) -> KeycardBroker:
        """
        A broker for a new connection; when the caps on strangers refuse
        it, a broker that tells the client so and closes (see
        L{KeycardBroker.refuse}), with nothing of the root's.
        """
        group = self.guard.admit(addr)
        if group is None:
            refused = self.protocol(False, self.security)
            refused.refuse(TOO_MANY)
            return refused
        broker: KeycardBroker = super().buildProtocol(addr)
        self.guard.track(broker, group)
        return broker
