"""
The PB server factory for keycard logins, and the guard that applies the
connection limits to its brokers: a deadline to log in, caps on
connections not logged in, in all and per client address.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.spread import pb
from twisted.spread.flavors import IPBRoot

from twisted_keycard.pb._broker import ConnectionLimits, KeycardBroker, groupOf

if TYPE_CHECKING:
    from twisted_keycard.pb._broker import KeycardBroker


#: Client addresses whose log lines are counted at once, at most.
_MAX_ALLOWANCES = 4096


@attrs.define(eq=False)
class _Entry:
    """
    What the guard knows of one connection.
    """

    group: str
    since: float
    timer: IDelayedCall | None = None
    lastReceived: float = 0.0
    loggedIn: bool = False


@attrs.define
class _LogAllowance:
    """
    The log lines one client address has had in the current window.
    """

    windowStart: float
    lines: int = 0
    suppressed: int = 0


class ConnectionGuard:
    """
    Applies L{ConnectionLimits} to the brokers of one server factory: it
    admits or refuses each new connection, drops those that do not log in
    in time (and, if asked, logged-in ones that go silent), and rations the
    log lines each client address causes.
    """

    log = Logger()

    def __init__(self, limits: ConnectionLimits, clock: IReactorTime) -> None:
        self.limits = limits
        #: Whether brokers tell L{received} of every message (only when
        #: logged-in connections have an idle timeout).
        self.watchesIdle = limits.idleTimeout is not None
        self._clock = clock
        self._entries: dict[KeycardBroker, _Entry] = {}
        #: Connections not logged in, by client address, oldest first.
        self._strangers: dict[str, dict[KeycardBroker, None]] = {}
        self._strangerCount = 0
        self._allowances: dict[str, _LogAllowance] = {}

    def unauthenticated(self, group: str | None = None) -> int:
        """
        Connections not logged in, in all or from one address group.
        """
        if group is None:
            return self._strangerCount
        return len(self._strangers.get(group, ()))

    def admit(self, address: object) -> str | None:
        """
        Make room for a new connection from C{address} (an L{IAddress}), or
        refuse it.

        @return: the client address group to L{track} the connection's
            broker under, or C{None} if the connection must be closed at
            once.
        """
        group = groupOf(address)
        limits = self.limits
        waiting = self._strangers.get(group, {})
        perGroup = limits.maxUnauthenticatedPerAddress
        if perGroup is not None and len(waiting) >= perGroup:
            self.note(
                group, "refused a connection from {group}: too many not logged in"
            )
            return None
        total = limits.maxUnauthenticated
        full = total is not None and self._strangerCount >= total
        if full and not self._evictFor(len(waiting)):
            self.note(group, "refused a connection from {group}: server full")
            return None
        return group

    def track(self, broker: KeycardBroker, group: str) -> None:
        """
        Apply the limits on strangers to an admitted connection's broker
        until it logs in.
        """
        limits = self.limits
        entry = self._entries[broker] = _Entry(group, self._clock.seconds())
        self._strangers.setdefault(group, {})[broker] = None
        self._strangerCount += 1
        timeout = limits.loginTimeout
        if timeout is not None:
            entry.timer = self._clock.callLater(timeout, self._loginTimedOut, broker)
        broker.useBudget(limits.loginBudget, limits.loginMessages, quiet=True)
        broker.guard = self

    def _evictFor(self, newcomers: int) -> bool:
        """
        Close the oldest connection not logged in of the address that holds
        the most, if it holds more than C{newcomers}.
        """
        largest: dict[KeycardBroker, None] | None = None
        oldest = 0.0
        for waiting in self._strangers.values():
            first = next(iter(waiting))
            since = self._entries[first].since
            if largest is None or (len(waiting), -since) > (len(largest), -oldest):
                largest, oldest = waiting, since
        if largest is None or len(largest) <= newcomers:
            return False
        victim = next(iter(largest))
        victim.drop("dropping {peer}: too many connections not logged in")
        self._forget(victim)
        return True

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

    def note(
        self, group: str, format: str, level: LogLevel = LogLevel.info, **fields: object
    ) -> None:
        """
        Log a line about client address C{group}, unless it had its share
        of lines in the current window (see L{ConnectionLimits.logLines}).
        """
        now = self._clock.seconds()
        allowance = self._allowances.get(group)
        if allowance is None or now - allowance.windowStart >= self.limits.logWindow:
            suppressed = 0 if allowance is None else allowance.suppressed
            if allowance is None and len(self._allowances) >= _MAX_ALLOWANCES:
                self._forgetAllowances(now)
            allowance = self._allowances[group] = _LogAllowance(now, 0, suppressed)
        if allowance.lines >= self.limits.logLines:
            allowance.suppressed += 1
            return
        allowance.lines += 1
        if allowance.suppressed:
            format += " ({suppressed} similar lines not logged)"
            fields["suppressed"], allowance.suppressed = allowance.suppressed, 0
        self.log.emit(level, format, group=group, **fields)

    def _forgetAllowances(self, now: float) -> None:
        """
        Forget the client addresses whose window has passed; all of them,
        if that is not enough to keep the table bounded.
        """
        window = self.limits.logWindow
        for group, allowance in list(self._allowances.items()):
            if now - allowance.windowStart >= window:
                del self._allowances[group]
        if len(self._allowances) >= _MAX_ALLOWANCES:
            self._allowances.clear()

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
        if entry.loggedIn:
            return
        waiting = self._strangers.get(entry.group)
        if waiting is not None and broker in waiting:
            del waiting[broker]
            self._strangerCount -= 1
            if not waiting:
                del self._strangers[entry.group]

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
    """

    protocol = KeycardBroker

    def __init__(
        self,
        root: IPBRoot,
        maxMessage: int | None = None,
        *,
        limits: ConnectionLimits = ConnectionLimits(),  # noqa: B008 - frozen
        clock: IReactorTime | None = None,
    ) -> None:
        """
        @param maxMessage: bytes of one message after login, at most: a
            shorthand for the C{bytes} of C{limits.budget}; it also lowers
            the login budget's if smaller.
        @param limits: the limits on each connection.
        @param clock: times the deadlines; the global reactor if C{None}.
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
        self.guard = ConnectionGuard(limits, clock)

    def buildProtocol(self, addr: object) -> KeycardBroker | None:
        """
        A broker for a new connection, or C{None} to close it at once when
        the limits on strangers refuse it.
        """
        group = self.guard.admit(addr)
        if group is None:
            return None
        broker: KeycardBroker = super().buildProtocol(addr)
        self.guard.track(broker, group)
        return broker
