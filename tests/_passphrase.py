"""
A small challenge-response keycard kind used to test the core without SCRAM:
the bouncer sends a nonce, the client answers SHA-256(secret, nonce).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

import attrs
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred, fail, succeed
from twisted.spread import pb
from zope.interface import implementer

from twisted_keycard import IAnswerer, IChallenger, IExchange, Keycard, registerKeycard
from twisted_keycard.error import KeycardRefused, ProtocolError
from twisted_keycard.keycard import Step, wireField


@registerKeycard
@attrs.define(slots=False, eq=False, kw_only=True)
class PassphraseKeycard(Keycard):
    keycardType = "twisted_keycard.tests.passphrase"

    username: str | None = wireField(str, 64, setBy="client")
    challenge: str | None = wireField(str, 64, setBy="bouncer")
    response: str | None = wireField(str, 64, setBy="client")

    def account(self) -> str | None:
        return self.username


def respond(secret: str, challenge: str) -> str:
    return hashlib.sha256(f"{secret}:{challenge}".encode()).hexdigest()


class IPassphraseExchange(IExchange):
    pass


@implementer(IPassphraseExchange)
@attrs.define
class PassphraseExchange:
    username: str
    nonce: str
    response: str | None = None
    concluded: bool = False

    def challenge(self, keycard: Keycard) -> bool:
        assert isinstance(keycard, PassphraseKeycard)
        keycard.challenge = self.nonce
        return True

    def answer(self, keycard: Keycard) -> None:
        assert isinstance(keycard, PassphraseKeycard)
        if keycard.response is None:
            raise ProtocolError("no response")
        self.response = keycard.response

    def conclude(self, keycard: Keycard) -> None:
        self.concluded = True


@implementer(ICredentialsChecker, IChallenger)
@attrs.define
class PassphraseChecker:
    secrets: Mapping[str, str]
    credentialInterfaces = (IPassphraseExchange,)
    keycardClasses = (PassphraseKeycard,)
    checked: int = 0

    def prime(self, keycard: Keycard) -> Deferred[IExchange]:
        if not isinstance(keycard, PassphraseKeycard) or keycard.username is None:
            return fail(ProtocolError("no username"))
        return succeed(PassphraseExchange(keycard.username, secrets.token_hex(16)))

    def requestAvatarId(  # type: ignore[override]  # our avatar ids are text
        self, exchange: PassphraseExchange
    ) -> Deferred[str]:
        self.checked += 1
        secret = self.secrets.get(exchange.username, "")
        expected = respond(secret, exchange.nonce)
        if (
            exchange.response is not None
            and hmac.compare_digest(expected, exchange.response)
            and exchange.username in self.secrets
        ):
            return succeed(exchange.username)
        return fail(KeycardRefused())


@implementer(IAnswerer)
@attrs.define
class PassphraseAnswerer:
    username: str
    secret: str = attrs.field(repr=False)
    keycardClass = PassphraseKeycard
    finished: bool = False

    def start(self) -> PassphraseKeycard:
        return PassphraseKeycard(username=self.username)

    def answer(self, keycard: Keycard) -> PassphraseKeycard:
        if not isinstance(keycard, PassphraseKeycard) or keycard.challenge is None:
            raise ProtocolError("no challenge")
        keycard.response = respond(self.secret, keycard.challenge)
        return keycard

    def finish(self, keycard: Keycard) -> None:
        self.finished = True


def sendFirst(
    root: pb.RemoteReference, keycard: Keycard, flags: int = 0, mind: object = None
) -> Deferred[Any]:
    """
    Send C{keycard}'s first message to a requester's root object, as a
    client does (keycard protocol 2): the answer is C{(b"challenge",
    exchange, ...)} or C{(b"logged_in", perspective, ...)}.
    """
    message = keycard.message(Step.FIRST)
    sent: Deferred[Any] = root.callRemote(
        "login", keycard.kind.encode(), flags, mind, *message
    )
    return sent
