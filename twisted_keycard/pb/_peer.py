"""
The address of a PB connection's peer, as the requester records it in each
keycard.
"""

from __future__ import annotations

from twisted.spread import pb

from twisted_keycard.keycard._address import normalizeAddress
from twisted_keycard.keycard._keycard import ADDRESS_LENGTH


def peerAddress(broker: pb.Broker) -> str | None:
    """
    The client's address as this side of the connection sees it: the host
    of an IP peer (normalized: an IPv4 peer of a dual-stack listener is its
    IPv4 address), else a bounded string form of the peer address.
    """
    transport = broker.transport
    if transport is None:
        return None
    peer = transport.getPeer()
    host = getattr(peer, "host", None)
    if isinstance(host, str):
        return normalizeAddress(host)[:ADDRESS_LENGTH]
    return str(peer)[:ADDRESS_LENGTH]
