"""
The budget of connections not yet authenticated that the faces of one
service share (its PB listener and its HTTP face): caps in all and per
client address group, a newcomer that takes the place of its group's
oldest, and the log lines each address group causes, rationed.
"""

from __future__ import annotations

from typing import Protocol

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel

from twisted_keycard.pb._broker import ConnectionLimits, groupOf

#: Client address groups whose log lines are counted at once, at most.
_MAX_ALLOWANCES = 4096

#: What a client refused for a cap is told, on either face.
TOO_MANY = "too many connections from your address"


class Stranger(Protocol):
    """
    A connection counted in a L{ConnectionBudget}: one not yet
    authenticated.
    """

    def evict(self) -> None:
        """
        Close the connection at once: a newer one from its address group
        takes its place.  The budget has already forgotten it.
        """


@attrs.define
class _LogAllowance:
    """
    The log lines one client address group has had in the current window.
    """

    windowStart: float
    lines: int = 0
    suppressed: int = 0


class ConnectionBudget:
    """
    Connections not yet authenticated, counted across every face that
    shares this budget: at most C{limits.maxUnauthenticated} in all, and
    C{limits.maxUnauthenticatedPerAddress} per client address group (an
    IPv4 address, an IPv6 /64).

    A newcomer from a group at its cap closes that group's oldest
    connection not yet authenticated and takes its place: many real
    clients share one address (NAT, a build host), and the newest of them
    is the one most likely to be someone trying now.  When the budget is
    full in all, a newcomer closes the oldest connection of the group that
    holds the most, if that group holds more than the newcomer's; else the
    newcomer is refused (and told L{TOO_MANY}).

    It also rations the log lines about refusals and drops per client
    address group (C{limits.logLines} per C{limits.logWindow} seconds),
    so that one address cannot flood the log through either face.

    @ivar limits: the caps (C{maxUnauthenticated},
        C{maxUnauthenticatedPerAddress}) and the log ration (C{logLines},
        C{logWindow}); its other fields are each face's own.
    """

    log = Logger()

    def __init__(self, limits: ConnectionLimits, clock: IReactorTime) -> None:
        """
        @param clock: times the log ration's windows.
        """
        self.limits = limits
        self._clock = clock
        #: Connections not authenticated, by address group, oldest first.
        self._strangers: dict[str, dict[Stranger, None]] = {}
        self._groups: dict[Stranger, str] = {}
        #: When each entered, in entries made: orders the oldest across
        #: groups.
        self._since: dict[Stranger, int] = {}
        self._entered = 0
        self._allowances: dict[str, _LogAllowance] = {}

    def unauthenticated(self, group: str | None = None) -> int:
        """
        Connections not authenticated, in all or from one address group.
        """
        if group is None:
            return len(self._groups)
        return len(self._strangers.get(group, ()))

    def admit(self, address: object, *, perAddress: bool = True) -> str | None:
        """
        Make room for a new connection from C{address} (an L{IAddress}),
        closing an older one if need be, or refuse it.

        @param perAddress: whether the cap per address group applies; not
            for a trusted reverse proxy, whose address every client of the
            proxy shares (the cap in all still does).
        @return: the client address group to L{enter} the connection
            under, or C{None} if it must be refused.
        """
        group = groupOf(address)
        limits = self.limits
        waiting = self._strangers.get(group, {})
        perGroup = limits.maxUnauthenticatedPerAddress if perAddress else None
        if perGroup is not None and waiting and len(waiting) >= perGroup:
            self.note(
                group,
                "closing the oldest connection not logged in from {group}:"
                " a newer one takes its place",
            )
            self._evict(next(iter(waiting)))
            return group
        total = limits.maxUnauthenticated
        full = total is not None and len(self._groups) >= total
        if full and not self._evictFor(len(waiting)):
            self.note(group, "refused a connection from {group}: server full")
            return None
        return group

    def enter(self, stranger: Stranger, group: str) -> None:
        """
        Count a connection that L{admit} let in, until it L{leave}s.
        """
        if stranger in self._groups:
            return
        self._entered += 1
        self._strangers.setdefault(group, {})[stranger] = None
        self._groups[stranger] = group
        self._since[stranger] = self._entered

    def leave(self, stranger: Stranger) -> None:
        """
        C{stranger} authenticated, or is gone: it no longer counts.
        """
        group = self._groups.pop(stranger, None)
        if group is None:
            return
        del self._since[stranger]
        waiting = self._strangers[group]
        del waiting[stranger]
        if not waiting:
            del self._strangers[group]

    def _evict(self, stranger: Stranger) -> None:
        self.leave(stranger)
        stranger.evict()

    def _evictFor(self, newcomers: int) -> bool:
        """
        Close the oldest connection of the address group that holds the
        most (the oldest such group on a tie), if it holds more than
        C{newcomers}.
        """
        largest: dict[Stranger, None] | None = None
        oldest = 0
        for waiting in self._strangers.values():
            since = self._since[next(iter(waiting))]
            if largest is None or (len(waiting), -since) > (len(largest), -oldest):
                largest, oldest = waiting, since
        if largest is None or len(largest) <= newcomers:
            return False
        self._evict(next(iter(largest)))
        return True

    def note(
        self, group: str, format: str, level: LogLevel = LogLevel.info, **fields: object
    ) -> None:
        """
        Log a line about client address group C{group}, unless it had its
        share of lines in the current window; the lines left out are
        counted, and the count logged with the next line allowed.
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
        Forget the address groups whose window has passed; all of them, if
        that is not enough to keep the table bounded.
        """
        window = self.limits.logWindow
        for group, allowance in list(self._allowances.items()):
            if now - allowance.windowStart >= window:
                del self._allowances[group]
        if len(self._allowances) >= _MAX_ALLOWANCES:
            self._allowances.clear()
