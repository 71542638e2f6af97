"""
The checker's half of a nonce exchange that checks itself: the exchange
knows the expected answer and verifies the client's once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred, fail, succeed

from twisted_keycard.error import KeycardRefused, ProtocolError


class SelfChecking(Protocol):
    def verify(self) -> bool:
        """
        Check the client's answer, once.

        @raise twisted_keycard.error.ExchangeOutOfOrder: if there is no
            answer, or it was checked.
        """


_E = TypeVar("_E", bound=SelfChecking)


def requestVerified(
    credentials: object, kind: type[_E], avatarId: Callable[[_E], str]
) -> Deferred[Any]:
    """
    What C{requestAvatarId} answers for an exchange of class C{kind}.

    @return: a L{Deferred} firing with C{avatarId(credentials)} when it
        verifies, or failing with L{KeycardRefused} for a wrong answer or
        other credentials, or with the
        L{twisted_keycard.error.ExchangeOutOfOrder} of an exchange not
        answered or checked already.
    """
    if not isinstance(credentials, kind):
        return fail(KeycardRefused())
    try:
        good = credentials.verify()
    except ProtocolError as e:
        return fail(e)
    return succeed(avatarId(credentials)) if good else fail(KeycardRefused())
