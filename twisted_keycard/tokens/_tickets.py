"""
Queue tickets: a client's claim on its place in a seat pool's queue,
signed with the token keyring (HMAC-SHA256), so that any bouncer of the
store takes it back after a dropped connection or a restart.

A ticket reads C{qt1.<key id>.<body>.<MAC>}: the body is the base64url of
the JSON of the pool, the ticket id, the avatar and the ticket's expiry;
the MAC, under the key named, covers everything before it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import secrets

import attrs

from twisted_keycard.tokens._tokens import (
    MAC_BYTES,
    BadSignature,
    Keyring,
    MalformedToken,
    SigningKey,
)

#: The prefix of every queue ticket.
TICKET_VERSION = "qt1"
#: Characters of a ticket, at most: a peer sends nothing longer.
MAX_TICKET = 1024
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
_PART = re.compile(r"[A-Za-z0-9_-]+\Z")


def newTicketId() -> str:
    """
    A new random ticket id (128 bits, base64url).
    """
    return secrets.token_urlsafe(16)


@attrs.frozen
class QueueTicket:
    """
    What a queue ticket says.

    @ivar pool: the seat pool it waits for.
    @ivar ticketId: its id in that pool's queue.
    @ivar avatarId: the avatar that queued it: only a login of that avatar
        takes the seat it waited for.
    @ivar expires: POSIX time after which no bouncer takes it back, however
        its place was renewed.
    """

    pool: str
    ticketId: str
    avatarId: str
    expires: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not _PART.match(text):
        raise MalformedToken("malformed queue ticket")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise MalformedToken("malformed queue ticket") from None


def signTicket(ticket: QueueTicket, key: SigningKey) -> str:
    """
    The text of C{ticket}, signed with C{key}.

    @raise ValueError: for a ticket id that is not 1-64 base64url
        characters, or a ticket longer than L{MAX_TICKET}.
    """
    if not _ID.match(ticket.ticketId):
        raise ValueError("a ticket id is 1-64 base64url characters")
    body = json.dumps(
        {
            "p": ticket.pool,
            "t": ticket.ticketId,
            "a": ticket.avatarId,
            "e": round(ticket.expires * 1000),
        },
        separators=(",", ":"),
        sort_keys=True,
    )
    signed = f"{TICKET_VERSION}.{key.kid}.{_b64(body.encode('utf-8'))}"
    text = f"{signed}.{_b64(key.mac(signed.encode('ascii')))}"
    if len(text) > MAX_TICKET:
        raise ValueError(f"a queue ticket is at most {MAX_TICKET} characters")
    return text


def claimedPool(text: object) -> str | None:
    """
    The pool a ticket names, read without checking its key or MAC: for a
    client to show which pool it waits for, never a proof.

    @return: C{None} if the ticket is not well formed enough to name one.
    """
    if not isinstance(text, str) or len(text) > MAX_TICKET:
        return None
    parts = text.split(".")
    if len(parts) != 4 or parts[0] != TICKET_VERSION:
        return None
    try:
        pool = json.loads(_unb64(parts[2]))["p"]
    except (MalformedToken, ValueError, KeyError, TypeError):
        return None
    return pool if isinstance(pool, str) else None


def verifyTicket(text: object, keyring: Keyring, now: float) -> QueueTicket:
    """
    Check a ticket's form, key, MAC and expiry, and return what it says.

    @raise MalformedToken: if it is not a well-formed ticket.
    @raise twisted_keycard.tokens.UnknownKey: if its key is unknown or
        retired at C{now} (another store's ticket, or a very old one).
    @raise BadSignature: if its MAC is wrong (tampered with), or it
        expired.
    """
    if not isinstance(text, str) or len(text) > MAX_TICKET or not text.isascii():
        raise MalformedToken("malformed queue ticket")
    parts = text.split(".")
    if len(parts) != 4 or parts[0] != TICKET_VERSION:
        raise MalformedToken("malformed queue ticket")
    _, kid, body, mac = parts
    key = keyring.verifying(kid, now)
    signed = text[: -len(mac) - 1]
    if not hmac.compare_digest(key.mac(signed.encode("ascii")), _unb64(mac)):
        raise BadSignature("bad queue ticket signature")
    try:
        fields = json.loads(_unb64(body))
        ticket = QueueTicket(
            str(fields["p"]), str(fields["t"]), str(fields["a"]), fields["e"] / 1000
        )
    except (ValueError, KeyError, TypeError):
        raise MalformedToken("malformed queue ticket") from None
    if len(_unb64(mac)) != MAC_BYTES or not _ID.match(ticket.ticketId):
        raise MalformedToken("malformed queue ticket")
    if ticket.expires <= now:
        raise BadSignature("queue ticket expired")
    return ticket
