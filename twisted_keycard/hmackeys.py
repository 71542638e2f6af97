"""
HMAC pre-shared keys: each client has its own key, kept by the bouncer in a
key file; the bouncer sends a nonce and the client answers with
HMAC-SHA256(key, context), where the context binds the nonce to this
exchange (keycard id, requester, client name).  A mismatch refuses the
keycard and the requester drops the connection.

Key files hold C{name:base64key} lines (keys of 16 to 64 bytes); C{#}
comments and blank lines are skipped.  The strcred name is C{hmac:FILE}.
"""

from __future__ import annotations

import hmac
import os
from base64 import b64decode, b64encode
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import attrs
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from twisted_keycard._files import (
    ParsedEntries,
    RunInThread,
    WatchedEntries,
    parseLines,
)
from twisted_keycard.error import ProtocolError, ServerAuthenticationFailed
from twisted_keycard.keycard import (
    NAME_LENGTH,
    IAnswerer,
    IChallenger,
    IExchange,
    Keycard,
    NonceExchange,
    WireSteps,
    exchangeContext,
    registerKeycard,
    requestVerified,
    wireField,
)

#: What every MAC starts with, so a MAC made here means nothing elsewhere.
LABEL = b"twisted-keycard hmac v1"
NONCE_BYTES = 24
MIN_KEY, MAX_KEY = 16, 64


@registerKeycard
@attrs.define(slots=False, eq=False, kw_only=True)
class HMACKeycard(Keycard):
    """
    A keycard proved with a pre-shared key.

    @ivar name: the client's name, which selects its key.
    @ivar nonce: the bouncer's challenge.
    @ivar mac: the client's answer, base64.
    """

    keycardType = "twisted_keycard.hmac-sha256"
    dropOnRefusal = True
    # The client signs the keycard id and the requester with the nonce.
    steps = WireSteps(
        first=("name",), challenge=("id", "requesterName", "nonce"), answer=("mac",)
    )

    name: str | None = wireField(str, NAME_LENGTH, setBy="client")
    nonce: str | None = wireField(str, 64, setBy="bouncer")
    mac: str | None = wireField(str, 64, setBy="client")

    def account(self) -> str | None:
        return self.name


def context(name: str, nonce: str, keycardId: str, requesterName: str | None) -> bytes:
    """
    What the MAC covers (see L{exchangeContext}).
    """
    return exchangeContext(LABEL, name, nonce, keycardId, requesterName)


def sign(key: bytes, message: bytes) -> str:
    return b64encode(hmac.digest(key, message, "sha256")).decode("ascii")


def parseKeys(text: str) -> ParsedEntries[bytes]:
    """
    Parse a key file, leaving out bad lines.

    @return: the keys, and a problem naming the line number of each bad
        line, never its key.
    """
    keys: dict[str, bytes] = {}

    def add(line: str) -> None:
        name, sep, encoded = line.partition(":")
        try:
            key = b64decode(encoded.strip(), validate=True)
        except ValueError:
            key = b""
        if not sep or not name or not MIN_KEY <= len(key) <= MAX_KEY:
            raise ValueError("expected name:base64 key of 16 to 64 bytes")
        keys[name] = key

    problems = parseLines(text, add)
    return ParsedEntries(keys, problems)


class IHMACExchange(IExchange):
    """
    An HMAC exchange on the bouncer's side.
    """


@attrs.frozen
class HMACProofCheck:
    """
    Checks a client's MAC with its key (a random one for an unknown name,
    so the failure looks the same).
    """

    label: ClassVar[bytes] = LABEL
    keycardClass: ClassVar[type[HMACKeycard]] = HMACKeycard

    key: bytes = attrs.field(repr=False)
    known: bool

    def read(self, keycard: Keycard) -> bytes:
        if not isinstance(keycard, HMACKeycard) or keycard.mac is None:
            raise ProtocolError("no MAC")
        # As bytes: compare_digest refuses str with non-ASCII characters,
        # and the MAC is whatever text the client sent.
        return keycard.mac.encode("utf-8")

    def accepts(self, context: bytes, proof: bytes) -> bool:
        expected = sign(self.key, context).encode("ascii")
        return hmac.compare_digest(expected, proof) and self.known


@implementer(IHMACExchange)
class HMACExchange(NonceExchange):
    """
    The bouncer's side: the nonce it sent and an L{HMACProofCheck}.
    """


@implementer(ICredentialsChecker, IChallenger)
class HMACKeys:
    """
    Checks HMAC keycards against a key per client name.
    """

    credentialInterfaces = (IHMACExchange,)
    keycardClasses = (HMACKeycard,)

    def __init__(
        self,
        keys: Mapping[str, bytes],
        *,
        randomBytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._keys: WatchedEntries[bytes] = WatchedEntries(keys)
        self._random = randomBytes

    @classmethod
    def fromFile(
        cls,
        path: str | Path,
        *,
        clock: IReactorTime | None = None,
        runInThread: RunInThread | None = None,
    ) -> HMACKeys:
        """
        Read a key file; it is read again, in a thread, when it changes (see
        L{WatchedEntries}).

        @param clock: the time of content checks; the global reactor's by
            default.
        @param runInThread: runs a blocking call off the reactor thread; the
            global reactor's thread pool by default.
        @raise OSError: if the file cannot be read.
        """
        keys = cls({})
        keys._keys = WatchedEntries(
            {}, path, parseKeys, clock=clock, runInThread=runInThread
        )
        return keys

    def prime(self, keycard: Keycard) -> Deferred[IExchange]:
        """
        Start an exchange, once a changed key file is read again.
        """
        return self._keys.whenCurrent(lambda: self._prime(keycard))

    def _prime(self, keycard: Keycard) -> Deferred[IExchange]:
        if not isinstance(keycard, HMACKeycard) or not keycard.name:
            return fail(ProtocolError("no client name"))
        key = self._keys.current().get(keycard.name)
        nonce = b64encode(self._random(NONCE_BYTES)).decode("ascii")
        if key is None:
            check = HMACProofCheck(self._random(32), known=False)
        else:
            check = HMACProofCheck(key, known=True)
        return succeed(HMACExchange(keycard.name, nonce, check))

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        return requestVerified(credentials, HMACExchange, lambda e: e.name)


@implementer(IAnswerer)
class HMACAnswerer:
    """
    The client side: answers the bouncer's nonce with its key.
    """

    keycardClass = HMACKeycard

    def __init__(self, name: str, key: bytes) -> None:
        if not MIN_KEY <= len(key) <= MAX_KEY:
            raise ValueError("a key has 16 to 64 bytes")
        self.name = name
        self._key = key

    def __repr__(self) -> str:
        return f"<HMACAnswerer {self.name!r}>"

    def start(self) -> Keycard:
        return HMACKeycard(name=self.name)

    def answer(self, keycard: Keycard) -> Keycard:
        if not isinstance(keycard, HMACKeycard) or not keycard.nonce or not keycard.id:
            raise ProtocolError("no challenge to answer")
        message = context(self.name, keycard.nonce, keycard.id, keycard.requesterName)
        keycard.mac = sign(self._key, message)
        return keycard

    def finish(self, keycard: Keycard) -> None:
        if not isinstance(keycard, HMACKeycard):
            raise ServerAuthenticationFailed("the server answered with another kind")
