"""
PB's own login (C{pb.PBClientFactory.login}: a user name, an MD5
challenge, the response) on a keycard root's port, for a migration: stock
clients keep working on the port keycard clients move to.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.spread import pb

from twisted_keycard.error import KeycardDenied, KeycardRefused
from twisted_keycard.pb._broker import KeycardBroker

#: What a stock PB client is told when the root takes keycards only.
KEYCARDS_ONLY = "this server takes keycards only"

#: The methods of PB's own root object.
STOCK_METHODS = frozenset(["login", "loginAnonymous"])


def isStockLogin(message: str, args: object, kw: object) -> bool:
    """
    Whether a call on the root object is PB's own login rather than a
    keycard's: C{loginAnonymous(mind)}, or C{login(username)} with a name
    and nothing else.
    """
    if message == "loginAnonymous":
        return True
    return (
        message == "login"
        and isinstance(args, tuple | list)
        and len(args) == 1
        and isinstance(args[0], bytes | str)
        and not kw
    )


def _refused(failure: Failure) -> Failure:
    """
    A wrong password as a L{KeycardRefused}: an L{UnauthorizedLogin} that
    PB sends without logging a traceback.
    """
    failure.trap(UnauthorizedLogin)
    if failure.check(KeycardRefused, KeycardDenied):
        return failure
    return Failure(KeycardRefused())


class _LoggedIn:
    """
    What the stock login does once the portal gives an avatar: what PB's
    own does, and tell a L{KeycardBroker} that its client logged in, so it
    is no longer a stranger (see L{twisted_keycard.ConnectionLimits}).
    """

    broker: pb.Broker

    def _cbLogin(self, result: Any) -> Any:
        avatar = super()._cbLogin(result)  # type: ignore[misc]
        if isinstance(self.broker, KeycardBroker):
            self.broker.loggedIn()
        return avatar


class _StockChallenger(_LoggedIn, pb._PortalAuthChallenger):
    """
    PB's check of the response to its challenge, through the portal's
    checkers; a refusal is sent as a L{KeycardRefused}.
    """

    def remote_respond(self, response: bytes, mind: object) -> Deferred[Any]:
        d: Deferred[Any] = super().remote_respond(response, mind)
        return d.addErrback(_refused)


class StockLogin(_LoggedIn, pb._PortalWrapper):
    """
    PB's own root object for one connection, over the application's portal
    and its checkers.
    """

    def __init__(self, portal: Portal, broker: pb.Broker) -> None:
        super().__init__(portal, broker)

    def remote_login(self, username: bytes) -> tuple[bytes, _StockChallenger]:
        challenge: bytes = pb.challenge()
        return challenge, _StockChallenger(
            self.portal, self.broker, username, challenge
        )

    def remote_loginAnonymous(self, mind: object) -> Deferred[Any]:
        d: Deferred[Any] = super().remote_loginAnonymous(mind)
        return d.addErrback(_refused)
