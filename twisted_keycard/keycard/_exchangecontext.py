"""
What a client proves in a nonce exchange (HMAC, signatures): the nonce bound
to this exchange, so a proof made for one is worth nothing in another.
"""

from __future__ import annotations


def exchangeContext(
    label: bytes, name: str, nonce: str, keycardId: str, requesterName: str | None
) -> bytes:
    """
    The label, the nonce, the keycard id, the requester and the client's
    name, NUL-separated.  Only the name (last) comes from the client; the
    other parts hold no NUL, so no two contexts read alike.
    """
    parts = [label, nonce.encode(), keycardId.encode(), (requesterName or "").encode()]
    return b"\0".join([*parts, name.encode("utf-8")])
