"""
A PB broker that can seal its connection: from then on every message
either way carries a sequence number and an HMAC-SHA256 under the
session's key for that direction, and a message that is not sealed, is
out of sequence or fails its MAC drops the connection.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import attrs
from twisted.spread import banana

from twisted_keycard.pb._banana import LinearDecoder, _encodeInto
from twisted_keycard.pb._broker import KeycardBroker
from twisted_keycard.sessions._keys import MAC_BYTES, messageMac

#: The first item of every sealed message.
SEALED = b"sealed"

#: Bytes of one piece of a sealed message's payload, at most (banana
#: takes strings of at most 640 KiB).
CHUNK = 512 * 1024


@attrs.define
class _Seal:
    sendKey: bytes = attrs.field(repr=False)
    receiveKey: bytes = attrs.field(repr=False)
    onBroken: Callable[[str], object]
    onMessage: Callable[[], object]
    sent: int = 0
    received: int = 0


class _PayloadDecoder(LinearDecoder):
    """
    Decodes the payload of one sealed message with its broker's
    vocabulary and budget.
    """

    def __init__(self, broker: KeycardBroker) -> None:
        super().__init__(broker.isClient)
        prefixLimit = broker.prefixLimit
        assert prefixLimit is not None, "set by connectionMade"
        self.setPrefixLimit(prefixLimit)
        self.currentDialect = b"pb"
        self.maxObjects = broker.maxObjects
        self.maxDepth = broker.maxDepth
        self.items: list[object] = []

    def callExpressionReceived(self, obj: object) -> None:
        self.items.append(obj)


def _noop(*args: object) -> None:
    pass


class SessionBroker(KeycardBroker):
    """
    A L{KeycardBroker} that L{seal}s its connection once a brokered
    session is established on it: both ends seal at the same message (the
    client's C{confirm} call), and neither can go back.
    """

    _seal: _Seal | None = None

    @property
    def sealed(self) -> bool:
        """
        Whether every message either way is sealed now.
        """
        return self._seal is not None

    def seal(
        self,
        sendKey: bytes,
        receiveKey: bytes,
        *,
        onBroken: Callable[[str], object] = _noop,
        onMessage: Callable[[], object] = _noop,
    ) -> None:
        """
        Seal every message from now on: those sent with C{sendKey}, those
        received checked with C{receiveKey}, each direction numbered from 0.

        @param onBroken: called with the reason when a received message
            fails, after the connection is dropped.
        @param onMessage: called for each sealed message received intact.
        @raise RuntimeError: if already sealed.
        """
        if self._seal is not None:
            raise RuntimeError("this connection is sealed already")
        self._seal = _Seal(sendKey, receiveKey, onBroken, onMessage)

    def sendEncoded(self, obj: object) -> None:
        seal = self._seal
        if seal is None:
            super().sendEncoded(obj)
            return
        out = bytearray()
        _encodeInto(self, obj, out, self.outgoingSymbols)
        payload = bytes(out)
        sequence = seal.sent
        seal.sent += 1
        mac = messageMac(seal.sendKey, sequence, payload)
        chunks = [payload[i : i + CHUNK] for i in range(0, len(payload), CHUNK)]
        super().sendEncoded([SEALED, sequence, mac, *chunks])

    def callExpressionReceived(self, obj: object) -> None:
        seal = self._seal
        if seal is None or self._dropped:
            super().callExpressionReceived(obj)
            return
        payload = _payload(obj)
        if payload is None:
            self._broken(seal, "a message that is not sealed")
            return
        sequence, mac, data = payload
        if sequence != seal.received:
            self._broken(seal, "a replayed or reordered message")
            return
        if not hmac.compare_digest(mac, messageMac(seal.receiveKey, sequence, data)):
            self._broken(seal, "a message that fails its MAC")
            return
        seal.received += 1
        decoder = _PayloadDecoder(self)
        try:
            decoder.dataReceived(data)
        except banana.BananaError:
            decoder.items = []
        if len(decoder.items) != 1 or decoder.pendingBytes or decoder.listStack:
            self._broken(seal, "a sealed message that is not one PB command")
            return
        seal.onMessage()
        super().callExpressionReceived(decoder.items[0])

    def _broken(self, seal: _Seal, reason: str) -> None:
        self.drop("dropping {peer}: {reason}; its session ends", reason=reason)
        seal.onBroken(reason)


def _payload(obj: object) -> tuple[int, bytes, bytes] | None:
    """
    The sequence number, MAC and payload of a sealed message, or C{None}
    if C{obj} is not one.
    """
    if not (isinstance(obj, list) and len(obj) >= 4 and obj[0] == SEALED):
        return None
    sequence, mac, chunks = obj[1], obj[2], obj[3:]
    if type(sequence) is not int or not isinstance(mac, bytes) or len(mac) != MAC_BYTES:
        return None
    if not all(isinstance(chunk, bytes) for chunk in chunks):
        return None
    data: Any = b"".join(chunks)
    return sequence, mac, data
