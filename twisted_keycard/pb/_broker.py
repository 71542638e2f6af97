"""
A PB broker that bounds what a peer can make it hold, keeps its log quiet,
and decodes banana in time that grows with the bytes received; the limits
on what a stranger's connection may cost before it logs in, as values; and
failures as the broker tells them to its peer: the error's class and
message, and nothing of the server's internals.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import TYPE_CHECKING, Any, Protocol

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger, LogLevel
from twisted.python import reflect
from twisted.python.failure import Failure
from twisted.spread import banana, pb
from twisted.spread.banana import BananaError
from twisted.spread.jelly import Jellyable

from twisted_keycard._printable import printable
from twisted_keycard._shares import positive, positiveOrNone
from twisted_keycard.error import InvalidKeycard, MalformedMessage
from twisted_keycard.keycard import ADDRESS_LENGTH, addressGroup

if TYPE_CHECKING:
    from twisted_keycard.pb._serverfactory import ConnectionGuard


_HEADER = re.compile(rb"[\x80-\xff]")

#: Lists open inside one another at most.  PB's unjelly recurses a few
#: frames per level, so anything deeper fails there anyway; the bound keeps
#: a peer from making a broker hold one open list per two bytes it sends.
MAX_DEPTH = 512


class MalformedBanana(banana.BananaError, NotImplementedError):
    """
    Bytes that are not banana, or not allowed here.  (Twisted's decoder
    raises L{NotImplementedError} for some of these, so this is one too.)
    """


class OverBudget(banana.BananaError):
    """
    A message that would decode to more items, or take more bytes, than its
    receiver's budget for one message allows.  Raised as soon as a header
    announces it, before anything is built.
    """


_LIST = banana.LIST[0]
_INT = banana.INT[0]
_STRING = banana.STRING[0]
_NEG = banana.NEG[0]
_FLOAT = banana.FLOAT[0]
_LONGINT = banana.LONGINT[0]
_LONGNEG = banana.LONGNEG[0]
_VOCAB = banana.VOCAB[0]


def _number(digits: bytes | bytearray) -> int:
    """
    The integer a banana header's base-128 digits (least significant first)
    stand for.
    """
    value = 0
    for digit in reversed(digits):
        value = (value << 7) | digit
    return value


def _header(num: int, kind: int, out: bytearray) -> None:
    """
    Append a banana header: C{num} in base-128 digits, least significant
    first (one zero digit for zero), then the type byte.
    """
    if num < 0x80:
        out.append(num)
    else:
        while num:
            out.append(num & 0x7F)
            num >>= 7
    out.append(kind)


def encodeInto(
    coder: banana.Banana, obj: object, out: bytearray, symbols: dict[bytes, int] | None
) -> None:
    """
    Append the banana form of C{obj}, as L{banana.Banana._encode} writes it:
    byte strings, small integers and lists are written here, a list's items
    in turn (with a stack, not a call per item), anything else by
    L{_encodeOther}.
    """
    stack: list[Iterator[Any]] = [iter((obj,))]
    while stack:
        for item in stack[-1]:
            kind = type(item)
            if kind is bytes:
                symbol = None if symbols is None else symbols.get(item)
                if symbol is not None:
                    _header(symbol, _VOCAB, out)
                    continue
                size = len(item)
                if size < 0x80:
                    out.append(size)
                    out.append(_STRING)
                elif size > banana.SIZE_LIMIT:
                    raise banana.BananaError(
                        f"byte string is too long to send ({size})"
                    )
                else:
                    _header(size, _STRING, out)
                out += item
            elif kind is list or kind is tuple:
                size = len(item)
                if size < 0x80:
                    out.append(size)
                    out.append(_LIST)
                elif size > banana.SIZE_LIMIT:
                    raise banana.BananaError(f"list/tuple is too long to send ({size})")
                else:
                    _header(size, _LIST, out)
                stack.append(iter(item))
                break
            elif kind is int and 0 <= item < 0x80:
                out.append(item)
                out.append(_INT)
            else:
                _encodeOther(coder, item, out, symbols)
        else:
            stack.pop()


def _encodeOther(
    coder: banana.Banana, obj: object, out: bytearray, symbols: dict[bytes, int] | None
) -> None:
    """
    L{encodeInto} for subclasses, other ints and floats.
    """
    if isinstance(obj, list | tuple):
        if len(obj) > banana.SIZE_LIMIT:
            raise banana.BananaError(f"list/tuple is too long to send ({len(obj)})")
        _header(len(obj), _LIST, out)
        for element in obj:
            encodeInto(coder, element, out, symbols)
    elif isinstance(obj, bytes):
        encodeInto(coder, bytes(obj), out, symbols)
    elif isinstance(obj, int):
        if 0 <= obj <= 0x7FFFFFFF:
            _header(obj, _INT, out)
        elif obj < coder._smallestLongInt or obj > coder._largestLongInt:
            raise banana.BananaError(f"int is too large to send ({obj})")
        elif obj < -0x80000000:
            _header(-obj, _LONGNEG, out)
        elif obj < 0:
            _header(-obj, _NEG, out)
        else:
            _header(obj, _LONGINT, out)
    elif isinstance(obj, float):
        out.append(_FLOAT)
        out += struct.pack("!d", obj)
    else:
        raise banana.BananaError(
            f"Banana cannot send {type(obj).__module__}.{type(obj).__qualname__}"
            f" objects: {obj!r}"
        )


class Decoding(Protocol):
    """
    What a L{BananaDecoder} reads of the protocol it decodes for: banana's
    own state and handler, and the limits on one message.

    @ivar maxMessage: bytes one message may take, at most; C{None} for no
        bound but banana's own.
    @ivar maxObjects: items one message may decode to, at most (the
        message itself, and every item of every list in it); C{None} for
        no bound.
    @ivar maxDepth: lists open inside one another, at most.
    """

    listStack: list[Any]
    prefixLimit: int | None
    incomingVocabulary: dict[int, bytes]
    currentDialect: bytes | None

    @property
    def maxMessage(self) -> int | None: ...
    @property
    def maxObjects(self) -> int | None: ...
    @property
    def maxDepth(self) -> int: ...

    def callExpressionReceived(self, obj: Any) -> None: ...


class BananaDecoder:
    """
    Decodes the bytes one banana protocol receives, in time linear in
    them (Twisted's decoder copies the rest of its buffer after each item).

    Items and limits are those of L{banana.Banana.dataReceived}: at most
    C{prefixLimit} header bytes, strings and lists of at most
    L{banana.SIZE_LIMIT}, vocabulary only in the C{pb} dialect; and the
    protocol's own limits on one message (see L{Decoding}), read at each
    call.  Every refusal is a L{banana.BananaError} (L{MalformedBanana}
    where Twisted's decoder raises L{NotImplementedError} or L{KeyError},
    L{OverBudget} for a message over C{maxObjects} or C{maxMessage}).

    A message is one top-level item (a PB command), with everything inside
    it.  Its items are counted when their list's header arrives, so a
    header that announces more items than the budget has left, or more
    than the bytes the message has left could hold (each item takes at
    least one), is refused before any of them is built.  Each whole
    message goes to the protocol's C{callExpressionReceived}.
    """

    __slots__ = (
        "_base",
        "_decoding",
        "_messageStart",
        "_objects",
        "_offset",
        "_pending",
        "protocol",
    )

    def __init__(self, protocol: Decoding) -> None:
        self.protocol = protocol
        self._pending = bytearray()
        self._offset = 0
        self._decoding = False
        #: Bytes dropped from the front of the buffer, in all, so that
        #: C{_base + offset} is a position in everything received.
        self._base = 0
        #: Where the message being decoded began, in everything received.
        self._messageStart = 0
        #: Items of the message being decoded, counted so far.
        self._objects = 1

    @property
    def pendingBytes(self) -> int:
        """
        Bytes received and not yet decoded into an item.
        """
        return len(self._pending) - self._offset

    def feed(self, chunk: bytes) -> None:
        """
        Decode C{chunk}, after what was received before it.

        @raise banana.BananaError: for bytes that are not banana, or over a
            limit.
        """
        pending = self._pending
        pending += chunk
        if self._decoding:
            # An item's handler fed us more: the running loop decodes it.
            return
        self._decoding = True
        try:
            self._decode(pending)
        finally:
            # Even if an item's handler raised, what was decoded is gone.
            self._decoding = False
            del pending[: self._offset]
            self._base += self._offset
            self._offset = 0

    def _decode(self, pending: bytearray) -> None:
        protocol = self.protocol
        stack: list[tuple[int, list[Any]]] = protocol.listStack
        deliver: Callable[[Any], None] = protocol.callExpressionReceived
        prefixLimit = protocol.prefixLimit
        assert prefixLimit is not None, "set by connectionMade"
        sizeLimit = banana.SIZE_LIMIT
        maxMessage = protocol.maxMessage
        maxObjects = protocol.maxObjects
        maxDepth = protocol.maxDepth
        # Positions in the buffer, kept in locals and written back at the
        # end (and before each message is delivered, whose handler may
        # raise).
        base = self._base
        offset = self._offset
        objects = self._objects
        messageStart = self._messageStart - base
        end = len(pending)
        try:
            while offset < end:
                start = offset
                # Most headers are one digit or none: read those directly.
                first = pending[start]
                if first & 0x80:
                    at, num = start, 0
                elif start + 1 < end and pending[start + 1] & 0x80:
                    at, num = start + 1, first
                else:
                    stop = min(end, start + prefixLimit + 1)
                    header = _HEADER.search(pending, start, stop)
                    if header is None:
                        if end - start > prefixLimit:
                            raise banana.BananaError(
                                f"Security precaution: more than {prefixLimit}"
                                " bytes of prefix"
                            )
                        return
                    at = header.start()
                    num = _number(pending[start:at])
                kind = pending[at]
                rest = at + 1
                item: Any
                if kind == _STRING:
                    if num > sizeLimit:
                        raise banana.BananaError(
                            "Security precaution: String too long."
                        )
                    if maxMessage is not None and num > maxMessage - (
                        rest - messageStart
                    ):
                        raise OverBudget(f"a string of {num} bytes in a message")
                    if end - rest < num:
                        return
                    offset = rest + num
                    item = bytes(pending[rest:offset])
                elif kind == _LIST:
                    if num > sizeLimit:
                        raise banana.BananaError("Security precaution: List too long.")
                    offset = rest
                    if num:
                        if len(stack) >= maxDepth:
                            raise MalformedBanana(
                                "Security precaution: lists nested over"
                                f" {maxDepth} deep"
                            )
                        objects += num
                        if maxObjects is not None and objects > maxObjects:
                            raise OverBudget(
                                f"a message of more than {maxObjects} items"
                            )
                        if maxMessage is not None and num > maxMessage - (
                            rest - messageStart
                        ):
                            raise OverBudget(f"a list of {num} items in a message")
                        stack.append((num, []))
                        continue
                    item = []
                elif kind in (_INT, _LONGINT):
                    offset = rest
                    item = num
                elif kind == _VOCAB:
                    offset = rest
                    item = protocol.incomingVocabulary.get(num)
                    if item is None:
                        raise MalformedBanana(f"Unknown vocabulary number {num}")
                    if protocol.currentDialect != b"pb":
                        raise MalformedBanana(f"Invalid item for pb protocol {item!r}")
                elif kind in (_NEG, _LONGNEG):
                    offset = rest
                    item = -num
                elif kind == _FLOAT:
                    if end - rest < 8:
                        return
                    offset = rest + 8
                    item = struct.unpack("!d", pending[rest:offset])[0]
                else:
                    raise MalformedBanana(f"Invalid Type Byte {bytes([kind])!r}")
                # Put the item in its list; a list it completes goes in the
                # one above, and a whole expression to the broker.
                while stack:
                    count, items = stack[-1]
                    items.append(item)
                    if len(items) != count:
                        break
                    stack.pop()
                    item = items
                else:
                    objects = 1
                    messageStart = offset
                    self._offset = offset
                    deliver(item)
                    # Its handler may have fed more bytes in.
                    end = len(pending)
        finally:
            self._offset = offset
            self._objects = objects
            self._messageStart = base + messageStart


def sendEncoded(coder: banana.Banana, obj: object) -> None:
    """
    Write C{obj} to C{coder}'s transport in one piece, encoded by
    L{encodeInto} (with the vocabulary of the C{pb} dialect, once chosen).
    """
    out = bytearray()
    symbols = coder.outgoingSymbols if coder.currentDialect == b"pb" else None
    encodeInto(coder, obj, out, symbols)
    transport: Any = coder.transport
    transport.write(bytes(out))


class LinearDecoder(banana.Banana):
    """
    A L{banana.Banana} that decodes with a L{BananaDecoder} and encodes
    with L{encodeInto}.

    @ivar maxMessage: see L{Decoding}.
    @ivar maxObjects: see L{Decoding}.
    @ivar maxDepth: see L{Decoding}.
    """

    maxMessage: int | None = None
    maxObjects: int | None = None
    maxDepth = MAX_DEPTH

    def __init__(self, isClient: int = 1) -> None:
        super().__init__(isClient)
        self.decoder = BananaDecoder(self)

    @property
    def pendingBytes(self) -> int:
        """
        Bytes received and not yet decoded into an item.
        """
        return self.decoder.pendingBytes

    def sendEncoded(self, obj: object) -> None:
        sendEncoded(self, obj)

    def dataReceived(self, chunk: bytes) -> None:
        self.decoder.feed(chunk)


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


@attrs.frozen
class MessageBudget:
    """
    What one PB message may cost the broker that receives it.

    @ivar bytes: bytes on the wire.
    @ivar objects: items it decodes to: the message, and every item of
        every list in it.
    @ivar depth: lists open inside one another.
    """

    bytes: int = attrs.field(validator=positive)
    objects: int = attrs.field(validator=positive)
    depth: int = attrs.field(validator=positive)


#: A keycard login message decodes to 16 items, 4 lists deep, in well
#: under 20 KiB (a keycard's state is at most 16 KiB): 64 times the items,
#: 8 times the depth, 3 times the bytes.
LOGIN_BUDGET = MessageBudget(bytes=64 * 1024, objects=1024, depth=32)

#: After login: PB's own bounds (1 MiB, lists nested 512 deep), and items
#: enough for a requester's list of 65,536 keycard ids.
SESSION_BUDGET = MessageBudget(bytes=1024 * 1024, objects=131_072, depth=MAX_DEPTH)


@attrs.frozen
class ConnectionLimits:
    """
    Limits on the connections of one C{KeycardServerFactory}.

    A connection is I{logged in} once it holds a keycard (see
    C{ClientConnection}); until then it is a stranger's.

    @ivar loginTimeout: seconds a connection has to log in before it is
        dropped; C{None} for no deadline.
    @ivar idleTimeout: seconds a logged-in connection may stay silent
        before it is closed; C{None} (the default) for never, since PB has
        no keepalive and a logged-in client may rightly say nothing for
        hours (its keycard's expiry ends it anyway).
    @ivar maxUnauthenticated: connections not logged in, at most, in all.  When
        full, a new connection closes the oldest one of the client address
        that holds the most, if that address holds at least as many as the
        newcomer's would; else the newcomer is refused, and told so.
    @ivar maxUnauthenticatedPerAddress: connections not logged in, at most, per
        client address (an IPv4 address, or an IPv6 /64); a new one from an
        address at its cap closes that address's oldest.  (Both caps are
        applied by a C{ConnectionBudget}, which faces may share.)
    @ivar loginMessages: messages a connection may send before it logs in
        (a login takes a few); C{None} for no bound.
    @ivar loginBudget: the L{MessageBudget} of each message before login.
    @ivar budget: the L{MessageBudget} of each message after login.
    @ivar logLines: lines about refused messages and dropped connections
        logged per client address and L{logWindow}, at most; the rest are
        counted, and the count is logged with the next line allowed.
    @ivar logWindow: seconds of that window.
    """

    loginTimeout: float | None = attrs.field(default=10.0, validator=positiveOrNone)
    idleTimeout: float | None = attrs.field(default=None, validator=positiveOrNone)
    maxUnauthenticated: int | None = attrs.field(default=512, validator=positiveOrNone)
    maxUnauthenticatedPerAddress: int | None = attrs.field(
        default=16, validator=positiveOrNone
    )
    loginMessages: int | None = attrs.field(default=32, validator=positiveOrNone)
    loginBudget: MessageBudget = LOGIN_BUDGET
    budget: MessageBudget = SESSION_BUDGET
    logLines: int = attrs.field(default=10, validator=attrs.validators.ge(0))
    logWindow: float = attrs.field(default=60.0, validator=positive)


def groupOf(address: object) -> str:
    """
    The client address group of an L{IAddress}: its host's L{addressGroup}
    for an IP address, else a bounded text form of the address.
    """
    host = getattr(address, "host", None)
    if isinstance(host, str):
        group = addressGroup(host)
        assert group is not None
        return group[:ADDRESS_LENGTH]
    return str(address)[:ADDRESS_LENGTH]


#: Bytes a peer may send towards one message at most, by default.
MAX_MESSAGE = SESSION_BUDGET.bytes

#: What a peer is told when its message is refused before login.
REFUSED = "message refused"

#: The jelly of C{None} and of an empty dictionary.
_NONE = [b"None"]
_EMPTY = [b"dictionary"]

#: What a peer is told of a failure that is not a L{pb.Error}, before login.
FAILED = "request failed"

#: What a server refusing a connection sends in place of its dialects,
#: followed by the reason: no PB client speaks it, so any hangs up.
REFUSAL = b"keycard-refused"

#: Characters of a server's refusal a client keeps, at most.
REFUSAL_LENGTH = 200


def refusalMessage(reason: str) -> bytes:
    """
    The banana a server sends a client it refuses, in place of the list of
    dialects: C{[REFUSAL, reason]}.
    """
    out = bytearray()
    text = reason.encode("utf-8")[:REFUSAL_LENGTH]
    encodeInto(banana.Banana(), [REFUSAL, text], out, None)
    return bytes(out)


def _isRefusal(obj: object) -> bool:
    """
    Whether C{obj}, a server's first message, is a L{refusalMessage}.
    """
    return (
        isinstance(obj, list)
        and len(obj) == 2
        and obj[0] == REFUSAL
        and isinstance(obj[1], bytes)
    )


class KeycardBroker(pb.Broker):
    """
    A L{pb.Broker} that decodes in time linear in the bytes received (with
    a L{BananaDecoder}), encodes with L{encodeInto}, and:

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
    #: Why the server refused this client's connection, if it did (see
    #: L{REFUSAL}).
    refusal: str | None = None
    #: The reason to refuse the connection with, on a server (see
    #: L{refuse}).
    _refusing: str | None = None
    _pendingBytes = 0
    _dropped = False
    _loggedIn = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.decoder = BananaDecoder(self)

    @property
    def pendingBytes(self) -> int:
        """
        Bytes received and not yet decoded into an item.
        """
        return self.decoder.pendingBytes

    def sendEncoded(self, obj: object) -> None:
        sendEncoded(self, obj)

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

    def refuse(self, reason: str) -> None:
        """
        Refuse the connection this server's broker is about to get: send
        the client C{reason} (a L{refusalMessage}, where a PB client reads
        the server's dialects) and close, reading nothing.
        """
        self._refusing = reason

    def connectionMade(self) -> None:
        """
        Send each message as soon as it is written (C{TCP_NODELAY}): PB
        here is request and answer, and an answer written a reactor turn
        after a small message (PB's version, on a new connection; a store
        that answers in its own thread) would otherwise wait for the
        peer's delayed acknowledgement, 40 ms on Linux.
        """
        transport: Any = self.transport
        if self._refusing is not None:
            self._dropped = True
            transport.write(refusalMessage(self._refusing))
            transport.loseConnection()
            return
        noDelay = getattr(transport, "setTcpNoDelay", None)
        if noDelay is not None:
            with suppress(OSError):
                noDelay(True)
        super().connectionMade()

    def loggedIn(self) -> None:
        """
        The peer holds a keycard now: its guard lifts the limits on
        strangers (once; a later login changes nothing).
        """
        if self.guard is not None and not self._loggedIn:
            self._loggedIn = True
            self.guard.loggedIn(self)

    def dataReceived(self, chunk: bytes) -> None:
        if self._dropped:
            return
        guard = self.guard
        if guard is not None and guard.watchesIdle:
            guard.received(self)
        self._pendingBytes += len(chunk)
        if self._pendingBytes > self.maxMessage:
            self.drop(
                "dropping {peer}: message over {limit} bytes", limit=self.maxMessage
            )
            return
        try:
            self.decoder.feed(chunk)
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
        if self.isClient and not self.currentDialect and _isRefusal(obj):
            assert isinstance(obj, list)
            reason = obj[1].decode("utf-8", "replace")[:REFUSAL_LENGTH]
            self.refusal = printable(reason)
            transport: Any = self.transport
            transport.loseConnection()
            return
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

    def evict(self) -> None:
        """
        Close the connection: a newer one from the client's address group
        takes its place in the budget of strangers (see
        L{ConnectionBudget}).
        """
        if self.guard is not None:
            self.guard.evicted(self)
        self.drop("dropping {peer}: a newer connection from its address came")

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

    def serialize(
        self,
        object: Any,
        perspective: object = None,
        method: object = None,
        args: object = None,
        kw: object = None,
    ) -> Any:
        """
        The jelly of C{object}; a tuple of byte strings, integers, floats
        and C{None}s (what a keycard login sends), and an empty dictionary,
        are written here as jelly writes them, without its machinery.
        """
        kind = type(object)
        if kind is tuple:
            flat: list[object] = [b"tuple"]
            for item in object:
                itemKind = type(item)
                if itemKind is bytes or itemKind is int or itemKind is float:
                    flat.append(item)
                elif item is None:
                    flat.append(_NONE)
                else:
                    break
            else:
                return flat
        elif kind is dict and not object:
            return _EMPTY
        return super().serialize(object, perspective, method, args, kw)

    def unserialize(self, sexp: object, perspective: object = None) -> object:
        """
        The object C{sexp} is the jelly of.  A tuple of byte strings,
        integers, floats and C{None}s, and an empty dictionary, are read
        here as unjelly reads them.  Anything a peer's message makes unjelly
        fail on is a L{MalformedMessage}, which PB sends back without
        logging a traceback.
        """
        if type(sexp) is list and sexp:
            tag = sexp[0]
            if tag == b"tuple":
                items: list[object] = []
                for item in sexp[1:]:
                    itemKind = type(item)
                    if itemKind is bytes or itemKind is int or itemKind is float:
                        items.append(item)
                    elif item == _NONE:
                        items.append(None)
                    else:
                        break
                else:
                    return tuple(items)
            elif tag == b"dictionary" and len(sexp) == 1:
                return {}
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
