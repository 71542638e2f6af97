"""
Errors raised by twisted-keycard.

Every error the library raises on purpose is a L{KeycardError}.  Those that
may cross Perspective Broker are also L{pb.Error} subclasses, so that PB sends
them to the peer without logging a traceback, and their messages are fixed
strings that tell an attacker nothing.
"""

from __future__ import annotations

from twisted.cred.error import LoginDenied, UnauthorizedLogin
from twisted.spread import pb


class KeycardError(Exception):
    """
    Base class of every error raised on purpose by twisted-keycard.
    """


class InvalidKeycard(KeycardError, pb.Error):
    """
    Raised when a keycard received from a peer has a field its class does not
    declare, a field of the wrong type, or a value over its length limit.

    Nothing of the keycard is changed when this is raised.
    """


class KeycardRefused(KeycardError, UnauthorizedLogin, pb.Error):
    """
    Raised (as a L{Failure}) when a bouncer refuses a keycard.

    It always carries the same message, whatever was wrong: a wrong password,
    an unknown user, a tampered or replayed message, an unknown keycard id.
    """

    MESSAGE = "keycard refused"

    def __init__(self, message: str = MESSAGE) -> None:
        super().__init__(message)


class KeycardDenied(KeycardError, UnauthorizedLogin, LoginDenied, pb.Error):
    """
    Raised when a bouncer will not take a keycard right now for a reason the
    requester should know and that helps no attacker: too many logins in
    progress, a quota reached.

    It is an L{UnauthorizedLogin}, so that a client that tries again after
    a refusal (as Buildbot's worker does, and gives up on anything else)
    tries again after a denial; and a L{LoginDenied}, as it always was.
    Code that tells the two apart checks L{KeycardDenied} first.
    """


class Throttled(KeycardDenied):
    """
    Raised when a bouncer's throttle refuses a login: too many failed
    logins (logins in progress counted) for the account or the client's
    address group in the throttle's window.

    @ivar retryAfter: seconds until enough of those leave the window for a
        login to be counted again, at the latest (a login in progress that
        succeeds frees its place sooner); C{None} where it is not known (a
        copy received over PB).
    """

    def __init__(self, message: str, retryAfter: float | None = None) -> None:
        super().__init__(message)
        self.retryAfter = retryAfter


class QuotaExceeded(KeycardDenied):
    """
    Raised when a keycard would exceed its avatar's cap on concurrent
    keycards, its seat pool's size or its avatar's share of that pool.
    The message says which, for the requester.

    @ivar limit: which limit it reached: C{"avatar"} (keycards per
        avatar), C{"pool"} (the pool is full, or others wait in its
        queue), C{"seats-per-avatar"} (the avatar holds its share of the
        pool), C{"queued"} (a queued ticket that is not at the head of its
        pool's queue), or, joining a pool's queue (see
        L{twisted_keycard.store.ISeatQueue}), C{"queue"} (the queue is
        full), C{"queue-per-avatar"} or C{"queue-per-address"} (the
        avatar, or the address, holds its share of the queue); C{None}
        where it is not known (a copy received over PB).
    """

    def __init__(self, message: str, limit: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit


class SeatQueued(QuotaExceeded):
    """
    Raised by a bouncer with a seat queue when a login that asked to wait
    for a seat found its pool full: the client was queued instead of
    refused.  A requester that asked for it sends the client its ticket and
    place rather than this denial; any other sees a denial of its pool.

    @ivar ticket: the signed queue ticket (see
        L{twisted_keycard.tokens.QueueTicket}) that keeps the client's
        place; C{None} in a copy received over PB.
    @ivar place: the client's place, 1 for the head of the queue.
    @ivar waiting: the number of clients waiting in that queue.
    """

    def __init__(
        self,
        message: str,
        ticket: str | None = None,
        place: int = 0,
        waiting: int = 0,
    ) -> None:
        super().__init__(message, "pool")
        self.ticket = ticket
        self.place = place
        self.waiting = waiting


class InsecureTransport(KeycardError, pb.Error):
    """
    Raised when a keycard that carries a secret would be sent over a
    connection that is not protected by TLS.
    """


class ServerAuthenticationFailed(KeycardError):
    """
    Raised on the client when the server could not prove its own identity
    (for SCRAM: a missing or wrong server signature).  The client refuses the
    login.
    """


class ProtocolError(KeycardError):
    """
    Raised when a message of an exchange is malformed or out of order.

    On the bouncer this becomes a L{KeycardRefused}; on the client it ends the
    login attempt.
    """


class ExchangeOutOfOrder(ProtocolError):
    """
    Raised on the bouncer when a step of a multi-step exchange (C{challenge},
    C{answer}, C{verify}, C{conclude}) is taken out of order, twice, or after
    the exchange was spent; the message is C{"<step> out of order"} for
    every kind.

    @ivar step: the name of the step refused.
    """

    def __init__(self, step: str) -> None:
        super().__init__(f"{step} out of order")
        self.step = step


class TooManyRounds(KeycardError):
    """
    Raised on the client when the server keeps asking for more challenge
    rounds than the client allows.
    """


class MalformedMessage(KeycardError, pb.Error):
    """
    Raised when a PB message from a peer cannot be taken: it names a class
    that may not be received, or its content is malformed.
    """


class SessionRefused(KeycardError, pb.Error):
    """
    Raised for any refusal in a brokered session's exchange (see
    L{twisted_keycard.sessions}): a ticket unknown, expired, used, asked
    for or redeemed by the wrong party, a proof that does not match, a
    bound reached.  It always carries the same message; the reason goes to
    the refusing side's log only.
    """

    MESSAGE = "session refused"

    def __init__(self, message: str = MESSAGE) -> None:
        super().__init__(message)
