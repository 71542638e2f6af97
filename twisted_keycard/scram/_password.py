"""
Plain passwords checked against SCRAM-SHA-256 verifiers, for requesters
that receive a password themselves (HTTP Basic and login forms over TLS):
the server computes the client's proof from the password, so one verifiers
file serves both SCRAM and password logins.
"""

from __future__ import annotations

import hmac
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from twisted_keycard._fileversion import RunInThread, inReactorThreadPool
from twisted_keycard.error import KeycardRefused, ProtocolError
from twisted_keycard.keycard._interfaces import IChallenger, IExchange
from twisted_keycard.keycard._keycard import Keycard
from twisted_keycard.passwords import (
    IPasswordExchange,
    PasswordExchange,
    PasswordKeycard,
)
from twisted_keycard.scram._crypto import clientKey, saltedPassword, sha256
from twisted_keycard.scram._server import SCRAMVerifiers
from twisted_keycard.scram._verifier import Verifier


def storedKeyMatches(password: str, verifier: Verifier) -> bool:
    """
    Whether C{password} gives the verifier's C{StoredKey}: the PBKDF2 a
    SCRAM client does, then C{H(ClientKey)}, compared in constant time.
    Blocking (PBKDF2): run it in a thread.

    A password SASLprep refuses matches nothing, after the same work.
    """
    try:
        salted = saltedPassword(password, verifier.salt, verifier.iterations)
    except ValueError:
        saltedPassword("", verifier.salt, verifier.iterations)
        return False
    return hmac.compare_digest(sha256(clientKey(salted)), verifier.storedKey)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


@implementer(ICredentialsChecker, IChallenger)
class SCRAMPasswordChecker:
    """
    Checks L{PasswordKeycard}s (and twisted.cred's L{IUsernamePassword})
    against L{SCRAMVerifiers}.

    An unknown user is checked against the mock verifier the SCRAM
    exchange would use (same salt length and iteration count), with the
    same PBKDF2 work and the same refusal as a wrong password.
    """

    credentialInterfaces = (IUsernamePassword, IPasswordExchange)
    keycardClasses = (PasswordKeycard,)

    def __init__(
        self,
        verifiers: SCRAMVerifiers,
        *,
        runInThread: RunInThread | None = None,
    ) -> None:
        """
        @param verifiers: the verifiers, also used for SCRAM logins.
        @param runInThread: runs the PBKDF2 off the reactor thread; the
            global reactor's thread pool by default.
        """
        self.verifiers = verifiers
        self._run = runInThread or inReactorThreadPool

    def __repr__(self) -> str:
        return f"<SCRAMPasswordChecker of {self.verifiers!r}>"

    def prime(self, keycard: Keycard) -> Deferred[IExchange]:
        if not isinstance(keycard, PasswordKeycard):
            return fail(ProtocolError("not a password keycard"))
        if keycard.username is None or keycard.password is None:
            return fail(ProtocolError("no user name or password"))
        return succeed(PasswordExchange(keycard.username, keycard.password))

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        """
        @return: a L{Deferred} firing with the user name, or failing with
            L{KeycardRefused} for a wrong password or an unknown user.
        """
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: Any) -> str:
        username = _text(credentials.username)
        password = _text(credentials.password)
        verifier, known = await self.verifiers.verifierFor(username)
        good = await self._run(storedKeyMatches, password, verifier)
        if not (good and known):
            raise KeycardRefused()
        return username
