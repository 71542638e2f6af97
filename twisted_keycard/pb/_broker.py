"""
A PB broker that bounds what a peer can make it hold, keeps its log quiet
about peers that send garbage, and tells a peer nothing of its internals
when a call fails.
"""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.spread import pb
from twisted.spread.banana import BananaError
from twisted.spread.jelly import Jellyable

from twisted_keycard._printable import printable
from twisted_keycard.error import InvalidKeycard, MalformedMessage
from twisted_keycard.pb._banana import LinearDecoder
from twisted_keycard.pb._failure import ECHO, SentFailure, describe
from twisted_keycard.pb._limits import SESSION_BUDGET, MessageBudget, groupOf

if TYPE_CHECKING:
    from twisted_keycard.pb._guard import ConnectionGuard

#: Bytes a peer may send towards one message at most, by default.
MAX_MESSAGE = SESSION_BUDGET.bytes

#: What a peer is told when its message is refused before login.
REFUSED = "message refused"

#: What a peer is told of a failure that is not a L{pb.Error}, before login.
FAILED = "request failed"


class KeycardBroker(pb.Broker, LinearDecoder):
    """
    A L{pb.Broker} that decodes in time linear in the bytes received (see
    L{LinearDecoder}) and:

      - drops a peer whose one message grows past L{maxMessage} bytes or
        L{maxObjects} items (counted as their list headers arrive), who
        sends more than L{maxMessages} messages, or who sends bytes that
        are not banana or commands that are not PB, with one warning and
        no traceback;
      - sends a failure to the peer as its class, its message and its
        class's parents: no frames, no source paths, no failure counter;
      - while L{quiet} (a server's connection before login), refuses any
        message that fails (an unknown method, wrong arguments, bad jelly,
        a name that is not text) with L{MalformedMessage}, logging one line
        and no traceback.

    A L{ConnectionGuard} (see C{KeycardServerFactory}) sets the budgets,
    and rations the broker's log lines per client address.

    @ivar guard: the guard of the server factory that built this broker,
        if any.
    """

    log = Logger()
    maxMessage = MAX_MESSAGE
    maxObjects: int | None = SESSION_BUDGET.objects
    maxDepth = SESSION_BUDGET.depth
    #: Messages the peer may still send; C{None} for no bound.
    maxMessages: int | None = None
    #: Refuse failing messages with a fixed error and one log line.
    quiet = False
    guard: ConnectionGuard | None = None
    _pendingBytes = 0
    _dropped = False

    def useBudget(
        self, budget: MessageBudget, messages: int | None, *, quiet: bool
    ) -> None:
        """
        Bound each message by C{budget}, and the messages to come by
        C{messages}; refuse failing messages quietly if C{quiet}.
        """
        self.maxMessage = budget.bytes
        self.maxObjects = budget.objects
        self.maxDepth = budget.depth
        self.maxMessages = messages
        self.quiet = quiet

    def connectionMade(self) -> None:
        """
        Send each message as soon as it is written (C{TCP_NODELAY}): PB
        here is request and answer, and an answer written a reactor turn
        after a small message (PB's version, on a new connection; a store
        that answers in its own thread) would otherwise wait for the
        peer's delayed acknowledgement, 40 ms on Linux.
        """
        noDelay = getattr(self.transport, "setTcpNoDelay", None)
        if noDelay is not None:
            with suppress(OSError):
                noDelay(True)
        super().connectionMade()

    def loggedIn(self) -> None:
        """
        The peer holds a keycard now: its guard lifts the limits on
        strangers.
        """
        if self.guard is not None:
            self.guard.loggedIn(self)

    def dataReceived(self, chunk: bytes) -> None:
        if self._dropped:
            return
        if self.guard is not None:
            self.guard.received(self)
        self._pendingBytes += len(chunk)
        if self._pendingBytes > self.maxMessage:
            self.drop(
                "dropping {peer}: message over {limit} bytes", limit=self.maxMessage
            )
            return
        try:
            super().dataReceived(chunk)
        except BananaError as e:
            # Bytes that are not banana: one line, not a reactor traceback.
            self.drop("dropping {peer}: {error}", error=printable(str(e)))
            return
        if not self.listStack:
            self._pendingBytes = self.pendingBytes

    def callExpressionReceived(self, obj: object) -> None:
        """
        Take one message: count it, and drop the peer, with one line, for
        anything that is not a PB command (a dialect nobody offered, a
        reply to no request, a command that is not a list, ...).
        """
        if self._dropped:
            return
        if self.maxMessages is not None:
            if self.maxMessages <= 0:
                self.drop("dropping {peer}: too many messages before login")
                return
            self.maxMessages -= 1
        choosing = not self.currentDialect and not self.isClient
        if choosing and (not isinstance(obj, bytes) or obj not in self.knownDialects):
            self.drop("dropping {peer}: no dialect offered was chosen")
            return
        try:
            super().callExpressionReceived(obj)
        except Exception as e:
            self.drop("dropping {peer}: bad PB command: {error}", error=describe(e))

    def proto_didNotUnderstand(self, command: object) -> None:
        self.note("{peer} did not understand {command}", command=repr(command)[:ECHO])

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Tell the guard, and a client factory that wants to know (see
        L{KeycardClientFactory.brokerLost}); PB's own factory is told only
        by connectors, not by endpoints.
        """
        if self.guard is not None:
            self.guard.lost(self)
        super().connectionLost(reason)
        lost = getattr(self.factory, "brokerLost", None)
        if lost is not None:
            lost(self, reason)

    def drop(self, format: str, *, abort: bool = True, **fields: object) -> None:
        """
        Close the connection (aborting it, unless C{abort} is false), and
        say why in one warning, rationed by the guard.
        """
        if self._dropped:
            return
        self._dropped = True
        transport: Any = self.transport
        if transport is None:
            return
        self.note(format, LogLevel.warn, **fields)
        if abort:
            transport.abortConnection()
        else:
            transport.loseConnection()

    def note(
        self, format: str, level: LogLevel = LogLevel.info, **fields: object
    ) -> None:
        """
        Log one line about the peer, C{{peer}} in C{format}; with a guard,
        only if the peer's address has not had its share of lines lately.
        """
        transport: Any = self.transport
        peer = None if transport is None else transport.getPeer()
        host = getattr(peer, "host", peer)
        if self.guard is None:
            self.log.emit(level, format, peer=printable(host), **fields)
            return
        self.guard.note(groupOf(peer), format, level, peer=printable(host), **fields)

    def unserialize(self, sexp: object, perspective: object = None) -> object:
        """
        Turn anything a peer's message makes unjelly fail on into a
        L{MalformedMessage}, which PB sends back without logging a traceback.
        """
        try:
            return super().unserialize(sexp, perspective)
        except (InvalidKeycard, MalformedMessage):
            raise
        except Exception as e:
            raise MalformedMessage(f"message refused: {type(e).__name__}") from e

    def _recvMessage(
        self,
        findObjMethod: Any,
        requestID: object,
        objectID: object,
        message: object,
        answerRequired: object,
        netArgs: object,
        netKw: object,
    ) -> None:
        """
        Call a local object for the peer; while L{quiet}, a call that fails
        at once is refused with one log line, never a traceback.
        """
        if not self.quiet:
            super()._recvMessage(
                findObjMethod,
                requestID,
                objectID,
                message,
                answerRequired,
                netArgs,
                netKw,
            )
            return
        try:
            if isinstance(message, bytes):
                message = message.decode("utf-8")
            if not isinstance(message, str):
                raise TypeError("a method name that is not text")
            target = findObjMethod(objectID)
            if target is None:
                raise pb.Error("Invalid Object ID")
            result = target.remoteMessageReceived(self, message, netArgs, netKw)
        except Exception as e:
            self.note("refused a message from {peer}: {error}", error=describe(e))
            if answerRequired:
                refusal = e if isinstance(e, pb.Error) else MalformedMessage(REFUSED)
                self._sendError(Failure(refusal), requestID)
            return
        if not answerRequired:
            return
        if isinstance(result, Deferred):
            result.addCallbacks(
                self._sendAnswer,
                self._sendFailureOrError,
                callbackArgs=(requestID,),
                errbackArgs=(requestID,),
            )
        else:
            self._sendAnswer(result, requestID)

    def _sendError(self, fail: object, requestID: object) -> None:
        """
        Send an error as Twisted does, but a failure only as its class, its
        message (a fixed one for a failure that is not a L{pb.Error}, while
        L{quiet}) and its class's parents.
        """
        if isinstance(fail, Failure):
            value = fail.value
            if not isinstance(value, Jellyable) and not self.security.isClassAllowed(
                type(value)
            ):
                unsafe = bool(getattr(self.factory, "unsafeTracebacks", False))
                text = FAILED if self.quiet and not fail.check(pb.Error) else None
                fail = SentFailure.of(fail, text, unsafe)
        super()._sendError(fail, requestID)
