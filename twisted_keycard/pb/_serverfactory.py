"""
The PB server factory for keycard logins: brokers that bound what a
stranger may cost the server.
"""

from __future__ import annotations

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.spread import pb
from twisted.spread.flavors import IPBRoot

from twisted_keycard.pb._broker import KeycardBroker
from twisted_keycard.pb._guard import ConnectionGuard
from twisted_keycard.pb._limits import ConnectionLimits


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
