"""
What a bouncer tells its metrics: each login's outcome, revocations seen,
and gauges read when metrics are collected.  The default, L{NoMetrics},
keeps nothing, so the bouncer needs no metrics library.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs
from twisted.cred.error import UnauthorizedLogin
from zope.interface import Interface, implementer

from twisted_keycard.bouncer._pending import BUSY
from twisted_keycard.bouncer._refusal import Refusal
from twisted_keycard.bouncer._throttle import TOO_MANY
from twisted_keycard.error import KeycardDenied, ProtocolError, QuotaExceeded

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


def kindName(keycardType: str) -> str:
    """
    How metrics name a keycard type: this library's without its prefix.
    """
    return keycardType.removeprefix("twisted_keycard.")


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
    """

    kinds: Sequence[str]
    held: Callable[[], int]
    pending: Callable[[], int]
    followLag: Callable[[], float | None]


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
