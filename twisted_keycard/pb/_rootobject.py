"""
The root object one client of a L{KeycardRoot} sees: it checks each call's
name and arguments, and passes the realm's refusals on to the client as
they are.
"""

from __future__ import annotations

from inspect import signature
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.spread import pb
from twisted.spread.flavors import NoSuchMethod

from twisted_keycard.error import KeycardRefused, MalformedMessage
from twisted_keycard.pb._broker import REFUSED
from twisted_keycard.pb._failure import passedOn
from twisted_keycard.pb._stocklogin import (
    KEYCARDS_ONLY,
    STOCK_METHODS,
    StockLogin,
    isStockLogin,
)

if TYPE_CHECKING:
    from twisted_keycard.pb._root import KeycardRoot


class _KeycardLogin(pb.Referenceable):
    """
    The root object one client sees.
    """

    def __init__(self, root: KeycardRoot, broker: pb.Broker) -> None:
        self._root = root
        self._broker = broker

    def remoteMessageReceived(
        self, broker: pb.Broker, message: str, args: object, kw: object
    ) -> object:
        """
        Call C{remote_keycardClasses} or C{remote_login} for the peer, after
        checking the name and the arguments, so that a stranger's bad call
        is a L{MalformedMessage} with a fixed message: no traceback in the
        log, no line that repeats the arguments.
        """
        if message not in _LOGIN_METHODS:
            raise MalformedMessage(REFUSED) from NoSuchMethod(repr(message[:40]))
        args = broker.unserialize(args)
        kw = broker.unserialize(kw)
        if isStockLogin(message, args, kw):
            if not self._root.stockLogin:
                raise KeycardRefused(KEYCARDS_ONLY)
            stock = StockLogin(self._root.portal, broker)
            method = getattr(stock, "remote_" + message)
            assert isinstance(args, tuple | list)
            return broker.serialize(method(*args), self.perspective)
        arity = _KEYCARD_METHODS.get(message)
        if arity is None:
            raise MalformedMessage(REFUSED) from NoSuchMethod(repr(message[:40]))
        method = getattr(self, "remote_" + message)
        try:
            if not isinstance(args, tuple | list) or not isinstance(kw, dict):
                raise TypeError("arguments that are not a tuple and a dictionary")
            if kw or len(args) != arity:
                # Not the plain positional call: let the signature judge.
                signature(method).bind(*args, **kw)
        except TypeError as e:
            raise MalformedMessage(REFUSED) from e
        return broker.serialize(method(*args, **kw), self.perspective)

    def remote_keycardClasses(self) -> list[str]:
        """
        The type tags of the keycards the bouncer takes (see
        L{KeycardRoot.kindsFor}), for clients that ask before they log in.
        """
        return self._root.kindsFor(self._broker)

    def remote_login(self, keycard: object, mind: object) -> Deferred[Any]:
        """
        One message of a keycard exchange.

        @return: a L{Deferred} firing with C{(keycard, None)} while the
            exchange goes on, C{(keycard, perspective)} on success, and
            C{(None, kinds)} for a first message the bouncer cannot take
            (a kind it does not take, or channel binding this connection
            cannot give), C{kinds} as L{KeycardRoot.kindsFor} lists them;
            it fails with L{KeycardRefused} or L{KeycardDenied}, or with
            what the realm raised, sent as it is.
        """
        d = Deferred.fromCoroutine(self._root.login(self._broker, keycard, mind))
        return d.addErrback(_passRealmRefusal)


class RealmRefusal(Exception):
    """
    Carries what the realm raised out of L{KeycardRoot.login}, logged once
    already, to be sent to the client as it is.

    @ivar error: the realm's error.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


def _passRealmRefusal(failure: Failure) -> Failure:
    value = failure.value
    if isinstance(value, RealmRefusal):
        return passedOn(value.error)
    return failure


#: The methods of a keycard login (C{remote_} + name), and how many
#: arguments each takes.
_KEYCARD_METHODS = {"keycardClasses": 0, "login": 2}

#: The methods a client may call on the root object.
_LOGIN_METHODS = frozenset(_KEYCARD_METHODS) | STOCK_METHODS
