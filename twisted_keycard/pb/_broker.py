"""
A PB broker that bounds what a peer can make it hold, and keeps its log
quiet about peers that send garbage.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.spread import pb
from twisted.spread.banana import BananaError

from twisted_keycard._printable import printable
from twisted_keycard.error import InvalidKeycard, MalformedMessage
from twisted_keycard.pb._banana import LinearDecoder

#: Bytes a peer may send towards one message at most, by default.
MAX_MESSAGE = 1024 * 1024


class KeycardBroker(pb.Broker, LinearDecoder):
    """
    A L{pb.Broker} that drops a peer whose single message grows past
    L{maxMessage} bytes, or who sends bytes that are not banana, with one
    warning and no traceback, and decodes in time linear in the bytes
    received (see L{LinearDecoder}).

    Banana checks each string and list against its own limit (640 KiB) but
    not the whole message, so a peer could otherwise make a broker buffer
    many such pieces before anything looks at them.
    """

    log = Logger()
    maxMessage = MAX_MESSAGE
    _pendingBytes = 0
    _dropped = False

    def dataReceived(self, chunk: bytes) -> None:
        if self._dropped:
            return
        self._pendingBytes += len(chunk)
        if self._pendingBytes > self.maxMessage:
            self._drop("message over {limit} bytes", limit=self.maxMessage)
            return
        try:
            super().dataReceived(chunk)
        except BananaError as e:
            # Bytes that are not banana: one line, not a reactor traceback.
            self._drop("{error}", error=printable(e))
            return
        if not self.listStack:
            self._pendingBytes = self.pendingBytes

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Tell a client factory that wants to know (see
        L{KeycardClientFactory.brokerLost}); PB's own factory is told only by
        connectors, not by endpoints.
        """
        super().connectionLost(reason)
        lost = getattr(self.factory, "brokerLost", None)
        if lost is not None:
            lost(self, reason)

    def _drop(self, why: str, **fields: object) -> None:
        self._dropped = True
        transport: Any = self.transport
        if transport is None:
            return
        peer = printable(transport.getPeer())
        self.log.warn("dropping {peer}: " + why, peer=peer, **fields)
        transport.abortConnection()

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
            self.log.debug(
                "refusing a malformed message: {error}", error=printable(repr(e))
            )
            raise MalformedMessage(f"message refused: {type(e).__name__}") from None
