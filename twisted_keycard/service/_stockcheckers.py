"""
Stock twisted.cred checkers behind a bouncer: a checker of
L{IUsernamePassword} credentials (C{--auth memory:...}, C{file:...},
C{unix}, or any application's own) serves password keycards, which are
sent only over TLS; and the checks that refuse, at startup, a checker that
serves no keycard kind and a policy that names a kind nobody serves.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_keycard.bouncer._composite import CompositePolicy
from twisted_keycard.error import KeycardDenied, KeycardRefused, ProtocolError
from twisted_keycard.keycard._interfaces import IChallenger, IExchange
from twisted_keycard.keycard._keycard import Keycard
from twisted_keycard.passwords import (
    IPasswordExchange,
    PasswordExchange,
    PasswordKeycard,
)
from twisted_keycard.tokencard import TokenKeycard

log = Logger(namespace="keycard-bouncer")


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


@implementer(IUsernamePassword)
class _UsernamePassword:
    """
    The password of a password keycard as twisted.cred's credentials; it
    compares in constant time whether the stored password is text or bytes.
    """

    def __init__(self, username: str | bytes, password: str) -> None:
        self.username = username
        self.password = (
            password.encode("utf-8") if isinstance(username, bytes) else password
        )

    def __repr__(self) -> str:
        return f"<_UsernamePassword {self.username!r}>"

    def checkPassword(self, password: str | bytes) -> bool:
        return hmac.compare_digest(_bytes(password), _bytes(self.password))


def _takesText(checker: ICredentialsChecker) -> bool:
    """
    Whether C{checker} keeps its user names as text: twisted.cred's
    in-memory checker made by C{--auth memory:...} does; its file and UNIX
    checkers, like the interface, take bytes.
    """
    users = getattr(checker, "users", None)
    return isinstance(users, dict) and any(isinstance(name, str) for name in users)


@implementer(ICredentialsChecker, IChallenger)
class PasswordChallenger:
    """
    Serves any L{IUsernamePassword} checker through password keycards: the
    bouncer primes the keycard's password into an exchange and the wrapped
    checker checks it as C{UsernamePassword} credentials.  The checker runs
    on the reactor thread, as it would in any Twisted server.

    @ivar checker: the wrapped checker.
    """

    credentialInterfaces = (IPasswordExchange,)
    keycardClasses = (PasswordKeycard,)

    def __init__(self, checker: ICredentialsChecker) -> None:
        self.checker = checker
        self._text = _takesText(checker)

    def __repr__(self) -> str:
        return f"<PasswordChallenger for {type(self.checker).__name__}>"

    def prime(self, keycard: Keycard) -> Deferred[IExchange]:
        if not isinstance(keycard, PasswordKeycard):
            return fail(ProtocolError("not a password keycard"))
        if keycard.username is None or keycard.password is None:
            return fail(ProtocolError("no user name or password"))
        return succeed(PasswordExchange(keycard.username, keycard.password))

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        """
        Check the password with the wrapped checker; any refusal is a
        L{KeycardRefused}, and a bytes avatar id is decoded.
        """
        username = credentials.username
        name: str | bytes = username if self._text else username.encode("utf-8")
        d = maybeDeferred(
            self.checker.requestAvatarId,
            _UsernamePassword(name, credentials.password),
        )
        return d.addCallbacks(_avatarText, _refused)


def _avatarText(avatarId: object) -> object:
    return avatarId.decode("utf-8") if isinstance(avatarId, bytes) else avatarId


def _refused(failure: Failure) -> Failure:
    failure.trap(UnauthorizedLogin)
    if failure.check(KeycardDenied):
        return failure
    return Failure(KeycardRefused())


def servingKeycards(
    checkers: Iterable[ICredentialsChecker], names: Sequence[str] = ()
) -> list[ICredentialsChecker]:
    """
    The checkers a bouncer is given, with every checker that takes only
    twisted.cred's L{IUsernamePassword} wrapped in a L{PasswordChallenger}.

    @param names: the C{--auth} strings, in the checkers' order, to name a
        checker in an error.
    @raise ValueError: naming a checker that serves no keycard kind, or a
        keycard kind served twice.
    """
    served: dict[str, int] = {}
    result: list[ICredentialsChecker] = []
    for index, checker in enumerate(checkers):
        name = names[index] if index < len(names) else type(checker).__name__
        if not IChallenger.providedBy(checker):
            if IUsernamePassword not in checker.credentialInterfaces:
                raise ValueError(
                    f"--auth {name} serves no keycard kind (its checker takes"
                    f" {_interfaces(checker)}); use a checker of user names"
                    " and passwords, or scram:, srp:, hmac:, sshkeys:, htpasswd:"
                )
            checker = PasswordChallenger(checker)
        assert IChallenger.providedBy(checker)
        for cls in checker.keycardClasses:
            other = served.setdefault(cls.keycardType, index)
            if other != index:
                raise ValueError(
                    f"--auth {names[other] if other < len(names) else other}"
                    f" and --auth {name} both serve"
                    f" {cls.keycardType} keycards; give one"
                )
        result.append(checker)
    return result


def _interfaces(checker: ICredentialsChecker) -> str:
    return ", ".join(i.__name__ for i in checker.credentialInterfaces) or "nothing"


def checkPolicyKinds(
    policy: CompositePolicy, checkers: Iterable[ICredentialsChecker], tokens: bool
) -> None:
    """
    Refuse a policy that names a keycard kind no checker serves: no keycard
    of that kind could ever make it true.

    @raise ValueError: naming the first such kind.
    """
    served = {
        cls.keycardType
        for checker in checkers
        if IChallenger.providedBy(checker)
        for cls in checker.keycardClasses
    }
    if tokens:
        served.add(TokenKeycard.keycardType)
    for name in policy.expression.names():
        if name.name == "address":
            continue
        if policy.kinds[name.name] not in served:
            hint = (
                "tokens are off (--no-tokens)"
                if name.name == "token"
                else (f"no --auth checker serves {name.name} keycards")
            )
            raise ValueError(f"--policy names {name.name!r}, but {hint}")


def warnPlainPasswords(listen: str, checkers: Iterable[ICredentialsChecker]) -> None:
    """
    Log a warning when a bouncer listening on C{listen} cannot take the
    password keycards its checkers serve: clients send them only over TLS.
    """
    if not listen.startswith(("tcp:", "tcp6:", "unix:")):
        return
    for checker in checkers:
        if not IChallenger.providedBy(checker):
            continue
        if PasswordKeycard in checker.keycardClasses:
            log.warn(
                "--listen {listen} is not TLS, and clients send password keycards"
                " only over TLS: no one can log in with a password here",
                listen=listen,
                event="bouncer.warning",
            )
            return
