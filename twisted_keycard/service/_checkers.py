"""
The checkers behind C{--auth}: strcred factories, so that C{--auth
scram:FILE} works in any twistd plugin, and stock twisted.cred checkers
behind a bouncer.
"""

from __future__ import annotations

import hmac
import re
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.strcred import ICheckerFactory
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_keycard.bouncer import CompositePolicy
from twisted_keycard.error import KeycardDenied, KeycardRefused
from twisted_keycard.hmackeys import HMACKeys, IHMACExchange
from twisted_keycard.keycard import IChallenger, IExchange, Keycard
from twisted_keycard.passwords import (
    IPasswordExchange,
    PasswordExchange,
    PasswordFile,
    PasswordKeycard,
)
from twisted_keycard.scram import ISCRAMExchange, SCRAMVerifiers
from twisted_keycard.srp import ISRPExchange, SRPVerifiers
from twisted_keycard.sshkeys import ISSHExchange, SSHKeys
from twisted_keycard.tokens import TokenKeycard

_MARKUP = re.compile(r"\b[BCILU]\{([^{}]*)\}")


def plainHelp(docstring: str | None) -> str:
    """
    A docstring as C{--help-auth-type} prints it: dedented, with epytext
    markup (C{C{...}}, C{L{...}}) reduced to its text.
    """
    return _MARKUP.sub(r"\1", textwrap.dedent(docstring or "")).strip()


@implementer(ICheckerFactory, IPlugin)
class SCRAMCheckerFactory:
    """
    C{scram:FILE}: SCRAM-SHA-256 keycards checked against FILE, lines of
    C{name:SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>} (the format
    PostgreSQL stores; C{keycard user add} writes it).  FILE is read again
    when it changes.
    """

    authType = "scram"
    authHelp = plainHelp(__doc__)
    argStringFormat = "scram:FILE (lines of name:SCRAM-SHA-256$...)"
    credentialInterfaces = (ISCRAMExchange,)

    def generateChecker(self, argstring: str = "") -> ICredentialsChecker:
        if not argstring:
            raise ValueError("scram: needs a file, as in scram:users.scram")
        return SCRAMVerifiers.fromFile(argstring)


@implementer(ICheckerFactory, IPlugin)
class HMACCheckerFactory:
    """
    C{hmac:FILE}: HMAC-SHA256 pre-shared keys, one per client, from FILE,
    lines of C{name:base64key} (16 to 64 bytes).  The bouncer sends a nonce;
    the client answers with the MAC of it and of the exchange; a mismatch
    drops the connection.  FILE is read again when it changes.
    """

    authType = "hmac"
    authHelp = plainHelp(__doc__)
    argStringFormat = "hmac:FILE (lines of name:base64key)"
    credentialInterfaces = (IHMACExchange,)

    def generateChecker(self, argstring: str = "") -> ICredentialsChecker:
        if not argstring:
            raise ValueError("hmac: needs a file, as in hmac:clients.keys")
        return HMACKeys.fromFile(argstring)


@implementer(ICheckerFactory, IPlugin)
class SSHKeysCheckerFactory:
    """
    C{sshkeys:FILE}: public-key signatures checked against FILE, lines of
    C{name} and an OpenSSH public key (C{ssh-ed25519 AAAA...}, ECDSA or
    RSA of 2048 bits or more), as in C{authorized_keys}.  No shared secret
    on the server.  FILE is read again when it changes.
    C{sshkeys:FILE:ignore=command,environment} takes lines with those
    options (command, environment, permitopen, permitlisten, tunnel,
    no-touch-required, verify-required), which refuse their line unless
    they do not apply to keycard logins.
    """

    authType = "sshkeys"
    authHelp = plainHelp(__doc__)
    argStringFormat = (
        "sshkeys:FILE[:ignore=OPTION,...] (lines of name ssh-ed25519 AAAA...)"
    )
    credentialInterfaces = (ISSHExchange,)

    def generateChecker(self, argstring: str = "") -> ICredentialsChecker:
        path, ignore = argstring, ""
        head, sep, tail = argstring.rpartition(":ignore=")
        if sep:
            path, ignore = head, tail
        if not path:
            raise ValueError("sshkeys: needs a file, as in sshkeys:authorized_keys")
        options = [o.strip().lower() for o in ignore.split(",") if o.strip()]
        if sep and not options:
            raise ValueError(
                "sshkeys: ignore= needs options, as in ignore=command,environment"
            )
        return SSHKeys.fromFile(path, ignoreOptions=options)


@implementer(ICheckerFactory, IPlugin)
class HtpasswdCheckerFactory:
    """
    C{htpasswd:FILE}: passwords checked against FILE, an Apache htpasswd
    file in any format Apache's htpasswd writes (bcrypt, apr1, SHA, crypt,
    SHA-256/512 crypt), shadow-like C{name:$6$...} lines, or argon2id PHC
    strings.  Takes twisted.cred's IUsernamePassword credentials and
    password keycards (sent only over TLS).
    """

    authType = "htpasswd"
    authHelp = plainHelp(__doc__)
    argStringFormat = "htpasswd:FILE (an Apache htpasswd file)"
    credentialInterfaces = PasswordFile.credentialInterfaces

    def generateChecker(self, argstring: str = "") -> ICredentialsChecker:
        if not argstring:
            raise ValueError("htpasswd: needs a file, as in htpasswd:/etc/app.htpasswd")
        return PasswordFile(argstring)


@implementer(ICheckerFactory, IPlugin)
class SRPCheckerFactory:
    """
    C{srp:FILE}: SRP-6a (a PAKE) against FILE, lines of
    C{name:SRP-SHA256-2048-SCRYPT$<N:r:p>$<kdfsalt>$<salt>$<verifier>}
    (C{SRPVerifier.fromPassword(name, password).toString()}), or older
    C{name:SRP-SHA256-2048$<salt>$<verifier>} lines: an eavesdropper who
    records the exchange cannot try passwords offline.
    """

    authType = "srp"
    authHelp = plainHelp(__doc__)
    argStringFormat = (
        "srp:FILE (lines of name:SRP-SHA256-2048-SCRYPT$N:r:p$kdfsalt$salt$verifier,"
        " or older name:SRP-SHA256-2048$salt$verifier)"
    )
    credentialInterfaces = (ISRPExchange,)

    def generateChecker(self, argstring: str = "") -> ICredentialsChecker:
        if not argstring:
            raise ValueError("srp: needs a file, as in srp:users.srp")
        return SRPVerifiers.fromFile(argstring)


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
        return PasswordExchange.of(keycard)

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
