"""
SCRAM channel binding (RFC 5802, section 6): the GS2 header a client
sends, what each side makes of it, and the C{c=} attribute that carries the
binding into the signed AuthMessage.

Over TLS a client binds (C{p=tls-exporter} over TLS 1.3, else
C{p=tls-server-end-point}) when the server lists SCRAM-SHA-256-PLUS, and
sends C{y} when it could bind but the server did not list it; a server that
can bind refuses C{y}, so a man in the middle who hides the PLUS listing is
caught.  Neither side ever takes the binding data from the other: each
computes it from its own end of the connection.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping, Sequence

from twisted_keycard.error import ProtocolError
from twisted_keycard.keycard._channel import BINDING_TYPES, ClientChannel

#: The client does not bind.
NO_BINDING = "n,,"
#: The client could bind, but thinks the server cannot.
NOT_OFFERED = "y,,"

#: A client's channel binding modes, as libpq's C{channel_binding}: bind
#: when the server can, insist on binding, never bind.
PREFER = "prefer"
REQUIRE = "require"
DISABLE = "disable"
MODES = (PREFER, REQUIRE, DISABLE)

_CB_NAME = re.compile(r"[A-Za-z0-9.-]+\Z")


def gs2Header(flag: str) -> str:
    """
    The GS2 header of a client-first message from its first part, C{n},
    C{y} or C{p=<type>}, without authorization identity.

    @raise ProtocolError: for a malformed flag or a binding type this
        implementation does not compute.
    """
    if flag.startswith("p="):
        kind = flag[2:]
        if not _CB_NAME.match(kind):
            raise ProtocolError("malformed GS2 header")
        if kind not in BINDING_TYPES:
            raise ProtocolError("channel binding type not supported")
    elif flag not in ("n", "y"):
        raise ProtocolError("malformed GS2 header")
    return f"{flag},,"


def bindingType(header: str) -> str | None:
    """
    The channel binding type a GS2 header asks for, if any.
    """
    if header.startswith("p="):
        return header[2:].partition(",")[0]
    return None


def bindingAttribute(header: str, data: bytes = b"") -> str:
    """
    The C{c=} attribute: base64 of the GS2 header followed by the binding
    data (none unless the header is C{p=...}).
    """
    return binascii.b2a_base64(header.encode("ascii") + data, newline=False).decode()


def clientHeader(
    channel: ClientChannel | None, mode: str, types: Sequence[str]
) -> tuple[str, bytes]:
    """
    What a client sends over a connection: its GS2 header and the data its
    C{c=} attribute binds to.

    @param channel: the connection; C{None} when unknown (no binding).
    @param mode: one of L{MODES}.
    @param types: the binding types the client uses, preferred first.
    @raise ProtocolError: in mode L{REQUIRE}, when it cannot bind.
    """
    bindings = channel.bindings if channel is not None and mode != DISABLE else {}
    usable = [kind for kind in types if kind in bindings]
    if not usable:
        header = NO_BINDING
    elif channel is not None and channel.serverBinds is False:
        header = NOT_OFFERED
    else:
        return f"p={usable[0]},,", bindings[usable[0]]
    if mode == REQUIRE:
        raise ProtocolError("channel binding is required but cannot be used here")
    return header, b""


def checkOffer(header: str, bindings: Mapping[str, bytes] | None) -> None:
    """
    The server's check of a client-first GS2 header against the channel
    binding data its requester gave (RFC 5802, section 6).

    @raise ProtocolError: for a binding type this connection cannot give,
        or for C{y} when it can bind (the client was told it cannot: a
        downgrade).
    """
    kind = bindingType(header)
    if kind is not None and kind not in (bindings or {}):
        raise ProtocolError("channel binding type not available on this connection")
    if header == NOT_OFFERED and bindings:
        raise ProtocolError("channel binding downgrade: the server can bind")


def serverBinding(header: str, bindings: Mapping[str, bytes] | None) -> str:
    """
    The C{c=} attribute the server expects in the client-final message, from
    the binding data of the connection the message came on.

    @raise ProtocolError: if the header asks for a binding that connection
        cannot give.
    """
    kind = bindingType(header)
    if kind is None:
        return bindingAttribute(header)
    data = (bindings or {}).get(kind)
    if data is None:
        raise ProtocolError("channel binding type not available on this connection")
    return bindingAttribute(header, data)
