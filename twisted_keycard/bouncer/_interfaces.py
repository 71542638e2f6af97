"""
The bouncer, the requesters it serves, and what it tells its metrics (each
login's outcome and why a login was refused, revocations seen, what it
holds): the interfaces, and the metrics that keep nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING

import attrs
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface, implementer

from twisted_keycard.error import KeycardDenied, ProtocolError, QuotaExceeded

if TYPE_CHECKING:
    from twisted_keycard.keycard import Keycard


class Refusal(Exception):
    """
    A keycard is refused; the message says why, in the bouncer's log.

    @ivar reason: a fixed word for the metrics (a key of
        L{twisted_keycard.bouncer._interfaces.REASONS}), never a peer's text.
    """

    def __init__(self, message: str, reason: str = "protocol") -> None:
        super().__init__(message)
        self.reason = reason


#: What a requester is told when the exchanges in progress are at their bound.
BUSY = "too many logins in progress; try again later"

#: What a requester is told when an account or address failed too often.
TOO_MANY = "too many failed logins; try again later"


#: Each reason a login can fail for, with the result it counts as:
#: C{refused} (the peer got the opaque refusal), C{denied} (the peer was
#: told to come back later) or C{error} (the bouncer failed).
REASONS = {
    "kind": "refused",
    "state": "refused",
    "unknown-id": "refused",
    "other-client": "refused",
    "protocol": "refused",
    "credentials": "refused",
    "checker": "refused",
    "policy": "refused",
    "throttled": "denied",
    "busy": "denied",
    "quota": "denied",
    "denied": "denied",
    "error": "error",
}

#: The results of a login: success, or the result of its failure's reason.
RESULTS = ("success", "refused", "denied", "error")


def failureReason(error: BaseException) -> str:
    """
    The reason, a key of L{REASONS}, for an error that ended a login.
    """
    if isinstance(error, Refusal):
        return error.reason
    if isinstance(error, ProtocolError):
        return "protocol"
    if isinstance(error, QuotaExceeded):
        return "quota"
    if isinstance(error, KeycardDenied):
        message = str(error)
        if message == TOO_MANY:
            return "throttled"
        return "busy" if message == BUSY else "denied"
    if isinstance(error, UnauthorizedLogin):
        return "credentials"
    return "error"


@attrs.frozen
class BouncerGauges:
    """
    What a bouncer measures when asked, rather than counts, and what it
    takes.

    @ivar kinds: the keycard kinds it takes, as L{IBouncerMetrics} names
        them, so each can be shown before its first login.
    @ivar held: the number of keycards its clients hold.
    @ivar pending: the number of exchanges waiting for an answer.
    @ivar followLag: seconds since it last read the revocations in its
        store, or C{None} if it does not follow them.
    @ivar requesters: the names of the requesters registered now (its own
        faces, and the remote requesters connected).
    @ivar seatPools: for each seat pool its keycards take a seat of, the
        seats its clients hold and the pool's size.
    @ivar seatShares: for each such pool, the most seats one avatar of its
        clients holds and the cap per avatar (C{None} without one).
    @ivar seatRefusals: for each such pool, the keycards refused since it
        started by the limit reached (C{"pool"}, C{"seats-per-avatar"},
        C{"avatar"}).
    @ivar seatQueues: for each seat pool with a queue, the clients waiting
        through this bouncer now, the queue's bound, and the longest wait of
        those clients so far in seconds.
    @ivar lease: the keycards held under its lease and the seconds left
        before the lease runs out unless renewed, or C{None} while it
        holds no lease.
    @ivar signingKey: the id of the key that signs its tokens (public: it
        is written in every token) and that key's age in seconds, or
        C{None} if it issues no tokens or has not loaded the keyring.
    @ivar failureRecords: the accounts and address groups its throttle
        counts in memory, or C{None} if it does not throttle.
    @ivar failureRecordsMax: the most it counts.
    @ivar storeUp: whether its store works, as the store last saw (see
        L{twisted_keycard.store.IStoreHealth}), or C{None} if the store
        cannot say.
    @ivar writesQueued: the writes its store has not committed yet, or
        C{None} if the store cannot say.
    """

    kinds: Sequence[str]
    held: Callable[[], int]
    pending: Callable[[], int]
    followLag: Callable[[], float | None]
    requesters: Callable[[], Collection[str]] = lambda: ()
    seatPools: Callable[[], Mapping[str, tuple[int, int]]] = lambda: {}
    seatShares: Callable[[], Mapping[str, tuple[int, int | None]]] = lambda: {}
    seatRefusals: Callable[[], Mapping[str, Mapping[str, int]]] = lambda: {}
    seatQueues: Callable[[], Mapping[str, tuple[int, int, float]]] = lambda: {}
    lease: Callable[[], tuple[int, float] | None] = lambda: None
    signingKey: Callable[[], tuple[str, float] | None] = lambda: None
    failureRecords: Callable[[], int | None] = lambda: None
    failureRecordsMax: int | None = None
    storeUp: Callable[[], bool | None] = lambda: None
    writesQueued: Callable[[], int | None] = lambda: None


class IBouncerMetrics(Interface):
    """
    Told by a L{twisted_keycard.bouncer.Bouncer} what it decides, at the
    moment it decides.  Labels are drawn from fixed sets, never from text a
    peer sent.
    """

    def watch(gauges: BouncerGauges) -> None:
        """
        The bouncer's gauges, read whenever metrics are collected; called
        once, when the bouncer is made.
        """

    def loginSucceeded(kind: str) -> None:
        """
        A keycard of C{kind} (its C{keycardType}) was issued.
        """

    def loginFailed(kind: str, reason: str) -> None:
        """
        A login with a keycard of C{kind} ended without a keycard, for
        C{reason}, a key of L{REASONS}.  C{kind} is C{"other"} for a keycard
        class the bouncer does not take.
        """

    def revocationsSeen(delays: Sequence[float]) -> None:
        """
        The bouncer read revocations from its store, recorded by it, by
        another bouncer or by C{keycard revoke}; C{delays} holds, for each,
        the seconds between its recording and its reading.
        """

    def revokedHeld(count: int) -> None:
        """
        The bouncer dropped the clients of C{count} keycards it held,
        because they were revoked.
        """

    def messageAnswered(kind: str, seconds: float) -> None:
        """
        The bouncer answered one message of a login with a keycard of
        C{kind} (as L{loginFailed} names it) C{seconds} after it arrived:
        with a challenge, a keycard or a refusal.  Its own work (checkers,
        hash threads, store), never the client's time between messages.
        """


@implementer(IBouncerMetrics)
class NoMetrics:
    """
    Metrics that keep nothing: a bouncer's default.
    """

    def watch(self, gauges: BouncerGauges) -> None:
        pass

    def loginSucceeded(self, kind: str) -> None:
        pass

    def loginFailed(self, kind: str, reason: str) -> None:
        pass

    def revocationsSeen(self, delays: Sequence[float]) -> None:
        pass

    def revokedHeld(self, count: int) -> None:
        pass

    def messageAnswered(self, kind: str, seconds: float) -> None:
        pass


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
    keycardClasses = Attribute(
        "The keycard classes this bouncer takes: a tuple; empty while it"
        " cannot tell (a remote bouncer not reached yet), when a"
        " KeycardRoot denies logins as not reachable yet."
    )

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
        counted as a failed login of its client's address group (never of
        its account: no password was tried), as an exchange left unanswered
        is.
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
