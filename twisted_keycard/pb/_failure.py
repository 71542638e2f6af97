"""
Failures as a L{KeycardBroker} tells them to its peer: the error's class
and message, and nothing of the server's internals.
"""

from __future__ import annotations

from twisted.python import reflect
from twisted.python.failure import Failure
from twisted.spread import pb

#: Characters of a peer's error text repeated in a log line, at most.
ECHO = 100


class SentFailure(pb.CopyableFailure):
    """
    A failure as a L{KeycardBroker} sends it: what a L{pb.CopiedFailure}
    needs and nothing else.
    """

    @classmethod
    def of(cls, fail: Failure, text: str | None, unsafe: bool) -> SentFailure:
        """
        What to send of C{fail}: its message, or C{text} instead; its
        traceback only if C{unsafe} (the factory's C{unsafeTracebacks}).
        """
        sent: SentFailure = cls.__new__(cls)
        sent.__dict__.update(
            type=fail.type,
            value=str(fail.value) if text is None else text,
            _parents=list(fail.parents),
            traceback=fail.getTraceback() if unsafe else "Traceback unavailable\n",
        )
        return sent

    def getTypeToCopy(self) -> bytes:
        return reflect.qual(pb.CopyableFailure).encode("utf-8")

    def getStateToCopy(self) -> dict[str, object]:
        failureType = self.__dict__["type"]
        return {
            "type": failureType
            if isinstance(failureType, bytes)
            else reflect.qual(failureType).encode("utf-8"),
            "value": self.__dict__["value"],
            "parents": self.__dict__["_parents"],
            "traceback": self.__dict__["traceback"],
            "tb": None,
            "frames": [],
            "stack": [],
            "captureVars": False,
            "pickled": 1,
        }


def describe(error: BaseException) -> str:
    """
    One bounded line about an error a peer caused, for the log: the error
    it caused (the cause of a L{MalformedMessage}, say), class and text.
    """
    cause = error.__cause__ if error.__cause__ is not None else error
    return f"{type(cause).__name__}: {str(cause)[:ECHO]!r}"


def passedOn(error: BaseException) -> Failure:
    """
    A failure of C{error} that PB sends to the peer as it is (its class,
    message and parents) without logging a traceback, as it does for a
    L{pb.Error}: for an error the application raised on purpose and that
    was logged once already.
    """
    failure = Failure(error)
    failure.parents = [*failure.parents, reflect.qual(pb.Error)]
    return failure
