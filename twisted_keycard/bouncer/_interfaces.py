"""
The bouncer and the requesters it serves.

Methods here have no C{self}; each docstring says what the returned
L{Deferred} fires with and how it fails.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted_keycard.keycard._keycard import Keycard


class IRequester(Interface):
    """
    What a bouncer calls back on the requester that holds keycards.
    """

    def expireKeycardIds(keycardIds: Sequence[str]) -> Deferred[None] | None:
        """
        The bouncer has expired or revoked these keycard ids: drop the
        clients that hold them.

        @param keycardIds: a sequence of keycard ids.
        @return: C{None} or a L{Deferred} firing when done.
        """

    def keycardIds() -> list[str]:
        """
        The ids of the keycards this requester's clients hold now, for a
        bouncer that lost track of them (a restart, a reconnection).
        """


class IBouncer(Interface):
    """
    Checks keycards, issues keycard ids, and expires them.
    """

    name = Attribute("The bouncer's name, set in the keycards it checks.")
    keycardClasses = Attribute("The keycard classes this bouncer takes: a tuple.")

    def authenticate(
        keycard: Keycard, connection: Hashable | None = None
    ) -> Deferred[Keycard]:
        """
        Take one message of an exchange.

        @param connection: the client connection the keycard came on, as a
            hashable token that is the same for every message of that
            connection (a requester passes its broker, say): the exchanges
            of one connection are bounded in number, are answered only on
            it, and end with it (see L{connectionLost}).  C{None} when the
            requester does not say: the exchange is bounded per client
            address only.
        @return: a L{Deferred} firing with a keycard: L{KeycardState.REQUESTING}
            with a challenge to answer, or L{KeycardState.AUTHENTICATED} with
            C{avatarId}, C{duration} and C{expires} set.  It fails with
            L{twisted_keycard.error.KeycardRefused} for any refusal, or
            L{twisted_keycard.error.KeycardDenied} when the bouncer will not
            take the keycard now.
        """

    def connectionLost(connection: Hashable) -> None:
        """
        The client connection C{connection} (as given to L{authenticate}) is
        gone and sends nothing more: drop its exchanges in progress, each
        counted as a failed login, as an exchange left unanswered is.
        """

    def registerRequester(name: str, requester: IRequester) -> None:
        """
        Tell the bouncer which L{IRequester} to call back for the keycards
        issued through requester C{name}.

        @raise ValueError: if another requester is registered under C{name}.
        """

    def unregisterRequester(name: str) -> None:
        """
        Forget the requester called C{name}.
        """

    def removeKeycardId(keycardId: str) -> Deferred[bool]:
        """
        The client that held this keycard has gone: forget the keycard
        without calling back its requester.

        @return: a L{Deferred} firing with C{True} if the id was issued and
            is now removed, C{False} if it was unknown.
        """

    def expireKeycardIds(keycardIds: Sequence[str]) -> Deferred[int]:
        """
        Expire these keycards now and tell the requesters that hold them.

        @return: a L{Deferred} firing with the number of ids expired.
        """

    def keepAlive(requesterName: str, keycardIds: Sequence[str]) -> Deferred[int]:
        """
        Renew the keycards that requester C{requesterName} still holds, each
        for its duration from now.  Ids issued through another requester are
        left alone.

        @return: a L{Deferred} firing with the number of keycards renewed.
        """
