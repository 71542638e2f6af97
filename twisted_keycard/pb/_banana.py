"""
A banana codec whose decoding cost grows with the bytes received, not with
their square, and which encodes without a call per byte.

L{twisted.spread.banana.Banana.dataReceived} slices the rest of its buffer
off after every item, so a chunk of C{n} bytes holding C{k} items costs about
C{n * k} bytes of copying, and it finds each item's header by iterating the
buffer one byte object at a time.  A peer that sends many small items in one
burst (or many logins in flight on one connection) makes that the largest
cost of a broker.  L{LinearDecoder} keeps one growing buffer and an offset,
reads headers directly, and decodes to exactly the same items with the same
limits; it also encodes into one buffer, to exactly Twisted's bytes.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from typing import Any

from twisted.spread import banana

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


def _encodeInto(
    coder: banana.Banana, obj: object, out: bytearray, symbols: dict[bytes, int] | None
) -> None:
    """
    Append the banana form of C{obj}, as L{banana.Banana._encode} writes it.
    """
    kind = type(obj)
    if kind is bytes:
        assert isinstance(obj, bytes)
        symbol = None if symbols is None else symbols.get(obj)
        if symbol is not None:
            _header(symbol, _VOCAB, out)
            return
        size = len(obj)
        if size > banana.SIZE_LIMIT:
            raise banana.BananaError(f"byte string is too long to send ({size})")
        if size < 0x80:
            out.append(size)
            out.append(_STRING)
        else:
            _header(size, _STRING, out)
        out += obj
    elif kind is list or kind is tuple:
        assert isinstance(obj, list | tuple)
        if len(obj) > banana.SIZE_LIMIT:
            raise banana.BananaError(f"list/tuple is too long to send ({len(obj)})")
        _header(len(obj), _LIST, out)
        for element in obj:
            _encodeInto(coder, element, out, symbols)
    elif kind is int and isinstance(obj, int) and 0 <= obj < 0x80:
        out.append(obj)
        out.append(_INT)
    else:
        _encodeOther(coder, obj, out, symbols)


def _encodeOther(
    coder: banana.Banana, obj: object, out: bytearray, symbols: dict[bytes, int] | None
) -> None:
    """
    L{_encodeInto} for subclasses, other ints and floats.
    """
    if isinstance(obj, list | tuple):
        if len(obj) > banana.SIZE_LIMIT:
            raise banana.BananaError(f"list/tuple is too long to send ({len(obj)})")
        _header(len(obj), _LIST, out)
        for element in obj:
            _encodeInto(coder, element, out, symbols)
    elif isinstance(obj, bytes):
        _encodeInto(coder, bytes(obj), out, symbols)
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


class LinearDecoder(banana.Banana):
    """
    A L{banana.Banana} with a decoder linear in the bytes received, and a
    faster encoder.

    Items and limits are those of L{banana.Banana.dataReceived}: at most
    C{prefixLimit} header bytes, strings and lists of at most
    L{banana.SIZE_LIMIT}, vocabulary only in the C{pb} dialect; and lists
    nested at most L{maxDepth} deep.  Every refusal is a
    L{banana.BananaError} (L{MalformedBanana} where Twisted's decoder
    raises L{NotImplementedError} or L{KeyError}, L{OverBudget} for a
    message over L{maxObjects} or L{maxMessage}).

    A message is one top-level item (a PB command), with everything inside
    it.  Its items are counted when their list's header arrives, so a
    header that announces more items than the budget has left, or more
    than the bytes the message has left could hold (each item takes at
    least one), is refused before any of them is built.

    @ivar maxMessage: bytes one message may take, at most; C{None} for no
        bound but banana's own.
    @ivar maxObjects: items one message may decode to, at most (the
        message itself, and every item of every list in it); C{None} for
        no bound.
    @ivar maxDepth: lists open inside one another, at most.
    """

    maxMessage: int | None = None
    maxObjects: int | None = None
    maxDepth = MAX_DEPTH
    _pending: bytearray | None = None
    _offset = 0
    _decoding = False
    #: Bytes dropped from the front of the buffer, in all, so that
    #: C{_base + offset} is a position in everything received.
    _base = 0
    #: Where the message being decoded began, in everything received.
    _messageStart = 0
    #: Items of the message being decoded, counted so far.
    _objects = 1

    @property
    def pendingBytes(self) -> int:
        """
        Bytes received and not yet decoded into an item.
        """
        return 0 if self._pending is None else len(self._pending) - self._offset

    def sendEncoded(self, obj: object) -> None:
        out = bytearray()
        symbols = self.outgoingSymbols if self.currentDialect == b"pb" else None
        _encodeInto(self, obj, out, symbols)
        transport: Any = self.transport
        transport.write(bytes(out))

    def dataReceived(self, chunk: bytes) -> None:
        pending = self._pending
        if pending is None:
            pending = self._pending = bytearray()
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
        stack: list[tuple[int, list[Any]]] = self.listStack
        deliver: Callable[[Any], None] = self.callExpressionReceived
        prefixLimit = self.prefixLimit
        assert prefixLimit is not None, "set by connectionMade"
        sizeLimit = banana.SIZE_LIMIT
        maxMessage = self.maxMessage
        maxObjects = self.maxObjects
        maxDepth = self.maxDepth
        while self._offset < len(pending):
            end = len(pending)
            start = self._offset
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
                    raise banana.BananaError("Security precaution: String too long.")
                if maxMessage is not None and num > self._bytesLeft(maxMessage, rest):
                    raise OverBudget(f"a string of {num} bytes in a message")
                if end - rest < num:
                    return
                self._offset = rest + num
                item = bytes(pending[rest : rest + num])
            elif kind == _LIST:
                if num > sizeLimit:
                    raise banana.BananaError("Security precaution: List too long.")
                self._offset = rest
                if num:
                    if len(stack) >= maxDepth:
                        raise MalformedBanana(
                            f"Security precaution: lists nested over {maxDepth} deep"
                        )
                    self._objects += num
                    if maxObjects is not None and self._objects > maxObjects:
                        raise OverBudget(f"a message of more than {maxObjects} items")
                    if maxMessage is not None and num > self._bytesLeft(
                        maxMessage, rest
                    ):
                        raise OverBudget(f"a list of {num} items in a message")
                    stack.append((num, []))
                    continue
                item = []
            elif kind in (_INT, _LONGINT):
                self._offset = rest
                item = num
            elif kind in (_NEG, _LONGNEG):
                self._offset = rest
                item = -num
            elif kind == _VOCAB:
                self._offset = rest
                item = self.incomingVocabulary.get(num)
                if item is None:
                    raise MalformedBanana(f"Unknown vocabulary number {num}")
                if self.currentDialect != b"pb":
                    raise MalformedBanana(f"Invalid item for pb protocol {item!r}")
            elif kind == _FLOAT:
                if end - rest < 8:
                    return
                self._offset = rest + 8
                item = struct.unpack("!d", pending[rest : rest + 8])[0]
            else:
                raise MalformedBanana(f"Invalid Type Byte {bytes([kind])!r}")
            # Put the item in its list; a list it completes goes in the one
            # above, and a whole expression to the broker.
            while stack:
                count, items = stack[-1]
                items.append(item)
                if len(items) != count:
                    break
                stack.pop()
                item = items
            else:
                self._objects = 1
                self._messageStart = self._base + self._offset
                deliver(item)

    def _bytesLeft(self, maxMessage: int, position: int) -> int:
        """
        The bytes the message being decoded may still take, after the
        header that ends at C{position} in the buffer.
        """
        return maxMessage - (self._base + position - self._messageStart)
