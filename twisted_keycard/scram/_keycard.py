"""
The SCRAM-SHA-256 keycard.
"""

from __future__ import annotations

import attrs

from twisted_keycard.error import ProtocolError
from twisted_keycard.keycard._keycard import Keycard, registerKeycard, wireField
from twisted_keycard.scram._messages import MAX_MESSAGE, ClientFirst


@registerKeycard
@attrs.define(slots=False, eq=False, kw_only=True)
class SCRAMKeycard(Keycard):
    """
    A keycard whose fields carry the standard SCRAM-SHA-256 messages of
    RFC 5802, so any SCRAM implementation can answer.  It never carries a
    password.  Over TLS a requester lists C{channelBoundType} after it: the
    bouncer then checks channel binding (SCRAM-SHA-256-PLUS) against the
    C{channelBindings} the requester records.

    @ivar clientFirst: the client-first message (GS2 header included).
    @ivar serverFirst: the server-first message.
    @ivar clientFinal: the client-final message.
    @ivar serverFinal: the server-final message.
    """

    keycardType = "twisted_keycard.scram-sha-256"
    channelBoundType = "twisted_keycard.scram-sha-256-plus"

    clientFirst: str | None = wireField(str, MAX_MESSAGE, setBy="client")
    serverFirst: str | None = wireField(str, MAX_MESSAGE, setBy="bouncer")
    clientFinal: str | None = wireField(str, MAX_MESSAGE, setBy="client")
    serverFinal: str | None = wireField(str, MAX_MESSAGE, setBy="bouncer")

    def bindsChannel(self) -> bool:
        """
        Whether the client-first message asks for channel binding (C{p=}).
        """
        return self.clientFirst is not None and self.clientFirst.startswith("p=")

    def account(self) -> str | None:
        """
        The user name in the client-first message, if it parses.
        """
        try:
            return self.parsedClientFirst().username
        except ProtocolError:
            return None

    def parsedClientFirst(self) -> ClientFirst:
        """
        The client-first message parsed, once for the text it holds: the
        bouncer reads it for the account and again to start the exchange.

        @raise ProtocolError: if it does not parse.
        """
        text = self.clientFirst
        parsed = self.__dict__.get("_parsedFirst")
        if parsed is not None and parsed[0] is text:
            first: ClientFirst = parsed[1]
            return first
        first = ClientFirst.parse(text)
        self.__dict__["_parsedFirst"] = (text, first)
        return first
