"""
The parts of C{keycard login}: an answerer for every keycard kind a user
can log in with, and the check of its C{--connect} endpoint.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.python.failure import Failure

from twisted_keycard._files import exposure
from twisted_keycard._printable import printable
from twisted_keycard.error import KeycardError, KeycardRefused, ProtocolError
from twisted_keycard.hmackeys import HMACAnswerer
from twisted_keycard.keycard import IAnswerer, kindName
from twisted_keycard.passwords import PasswordAnswerer
from twisted_keycard.pb import KeycardClientFactory, KeycardLogin, refuseProtocol1
from twisted_keycard.scram import SCRAMAnswerer, SCRAMKeycard
from twisted_keycard.srp import SRPAnswerer
from twisted_keycard.sshkeys import (
    AgentError,
    AgentKey,
    SSHAnswerer,
    agentAnswerers,
    agentEndpoint,
    isPublicKeyFile,
    loadPrivateKey,
)
from twisted_keycard.tokens import TokenAnswerer, claimedPool

#: Seconds to wait for the connection, then for the login's answers.
DEFAULT_TIMEOUT = 30.0

#: The kinds C{--kind} takes, by the keycard type each logs in with.
PASSWORD_KINDS = {
    "scram": SCRAMAnswerer,
    "srp": SRPAnswerer,
    "password": PasswordAnswerer,
}
KEY_KINDS = {"hmac": HMACAnswerer, "sshkey": SSHAnswerer}
KINDS = [*PASSWORD_KINDS, *KEY_KINDS]
_ANSWERERS: dict[str, Any] = {**PASSWORD_KINDS, **KEY_KINDS, "token": TokenAnswerer}
_NAMES = {cls.keycardClass.kind: name for name, cls in _ANSWERERS.items()}


class LoginFailed(KeycardError):
    """
    Raised for a login that could not be made, with a one-line reason
    (C{keycard login} exits with status 2).
    """


ReadSecret = Callable[[str], str]


def optionName(kind: str) -> str:
    """
    The C{--kind} name of a keycard kind, or the kind itself.
    """
    return _NAMES.get(kind, kind)


def readPrivate(path: str, what: str) -> bytes:
    """
    The content of a file holding a secret, refused (as OpenSSH refuses a
    private key) when other users may read it.

    @raise LoginFailed: for a missing, unreadable or exposed file.
    """
    problem = exposure(path)
    if problem is not None:
        raise LoginFailed(f"{problem}: a {what} must be private (chmod 600 it)")
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise LoginFailed(f"cannot read the {what} {path}: {e.strerror}") from None


def tokenAnswerer(path: str) -> TokenAnswerer:
    """
    Log in again with the token saved in C{path} (by C{--save-token}).
    """
    token = readPrivate(path, "token file").decode("ascii", "replace").strip()
    if not token:
        raise LoginFailed(f"the token file {path} is empty")
    return TokenAnswerer(token)


def hmacKey(path: str) -> bytes:
    """
    An HMAC key file: the base64 key, or the C{name:base64key} line of the
    bouncer's keys file.
    """
    text = readPrivate(path, "key file").decode("ascii", "replace").strip()
    encoded = text.rpartition(":")[2].strip()
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError:
        raise LoginFailed(f"{path} holds no base64 key") from None


def sshKey(path: str, readSecret: ReadSecret) -> Any:
    """
    An OpenSSH (or PEM) private key; the passphrase of an encrypted one is
    read as passwords are.
    """
    data = readPrivate(path, "key file")
    try:
        return loadPrivateKey(data)
    except TypeError:
        pass  # encrypted: it needs its passphrase
    except ValueError as e:
        raise LoginFailed(f"{path}: {e}") from None
    passphrase = readSecret(f"Passphrase for {path}: ")
    try:
        return loadPrivateKey(data, passphrase.encode("utf-8"))
    except (TypeError, ValueError):
        raise LoginFailed(f"{path}: wrong passphrase") from None


@attrs.frozen
class FromAgent:
    """
    A C{--kind sshkey} login signed by the SSH agent (C{SSH_AUTH_SOCK}):
    with every key it holds in turn, or only those of the C{.pub} files
    given.

    @ivar only: the keys to use, none for all the agent's.
    """

    user: str
    only: tuple[AgentKey, ...] = ()

    async def answerers(
        self, reactor: Any, timeout: float = DEFAULT_TIMEOUT
    ) -> list[IAnswerer]:
        """
        The agent's keys, listed within C{timeout} seconds.

        @raise LoginFailed: without an agent, or one that holds no key that
            fits or does not answer.
        """
        try:
            listing = Deferred.fromCoroutine(
                agentAnswerers(self.user, agentEndpoint(reactor), self.only)
            )
            found = await _within(
                listing,
                timeout,
                reactor,
                f"the SSH agent did not answer within {timeout:g} s",
            )
        except AgentError as e:
            raise LoginFailed(str(e)) from None
        return list(found)


def agentKeys(paths: Sequence[str]) -> tuple[AgentKey, ...]:
    """
    The keys of C{.pub} (or C{-cert.pub}) files, to pick the agent's key.

    @raise LoginFailed: for a file that cannot be read or used.
    """
    keys = []
    for path in paths:
        try:
            keys.append(AgentKey.fromLine(Path(path).read_bytes()))
        except OSError as e:
            raise LoginFailed(f"cannot read {path}: {e.strerror}") from None
        except ValueError as e:
            raise LoginFailed(f"{path}: {e}") from None
    return tuple(keys)


def _isPublic(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return isPublicKeyFile(f.read(4096))
    except OSError:
        return False


def answererFor(
    kind: str,
    user: str,
    readSecret: ReadSecret,
    keyFile: str | None = None,
    certificate: str | None = None,
) -> IAnswerer | FromAgent:
    """
    The answerer of C{--kind KIND} for C{user}: a password read with
    C{readSecret}, or the key in C{keyFile}; for C{--kind sshkey} without
    a key file, or with a public key file (C{.pub}), the SSH agent's keys.

    @raise LoginFailed: for an HMAC login without C{--key-file}, or a key
        file that cannot be used.
    """
    if kind in PASSWORD_KINDS:
        if keyFile is not None:
            raise LoginFailed(f"--kind {kind} takes a password, not --key-file")
        answerer: IAnswerer = PASSWORD_KINDS[kind](user, readSecret("Password: "))
        return answerer
    if kind == "sshkey" and (keyFile is None or _isPublic(keyFile)):
        given = [p for p in (keyFile, certificate) if p is not None]
        return FromAgent(user, agentKeys(given))
    if keyFile is None:
        raise LoginFailed(f"--kind {kind} needs --key-file FILE")
    if kind == "hmac":
        try:
            return HMACAnswerer(user, hmacKey(keyFile))
        except ValueError as e:
            raise LoginFailed(f"{keyFile}: {e}") from None
    cert = None
    if certificate is not None:
        try:
            cert = Path(certificate).read_bytes()
        except OSError as e:
            raise LoginFailed(f"cannot read {certificate}: {e.strerror}") from None
    try:
        return SSHAnswerer(user, sshKey(keyFile, readSecret), cert)
    except ValueError as e:
        raise LoginFailed(f"{certificate}: {e}") from None


def _within(
    d: Deferred[Any], seconds: float, clock: IReactorTime, why: str
) -> Deferred[Any]:
    """
    C{d}, cancelled and failed with L{LoginFailed}C{(why)} after C{seconds}.
    """

    def timedOut(result: object, timeout: float) -> Failure:
        return Failure(LoginFailed(why))

    return d.addTimeout(seconds, clock, onTimeoutCancel=timedOut)


async def logIn(
    clock: IReactorTime,
    endpoint: IStreamClientEndpoint,
    answerer: IAnswerer | Sequence[IAnswerer],
    timeout: float = DEFAULT_TIMEOUT,
    description: str = "",
    waitForSeat: float | None = None,
    onPlace: Callable[[str | None, int, int], object] | None = None,
) -> KeycardLogin:
    """
    Connect within C{timeout} seconds, then log in within as many more.

    @param answerer: the answerer, or answerers of one kind to try in turn
        until the server takes one (the SSH agent's keys).
    @param waitForSeat: seconds to wait in the queue of a full seat pool
        (on top of C{timeout}), if the bouncer keeps one.
    @param onPlace: told the pool (as the ticket names it), the place and
        the number waiting, each time they change.

    @raise LoginFailed: when either takes longer, with a hint when the
        endpoint is plain TCP (a TLS server never answers it).
    @raise KeycardRefused: naming the kinds the server takes when it takes
        none of C{answerer}'s.
    """
    factory = KeycardClientFactory()
    await _within(
        endpoint.connect(factory),
        timeout,
        clock,
        f"no connection within {timeout:g} s",
    )
    hint = ": is it a TLS endpoint? (then use tls:HOST:PORT:trustRoots=DIR)"
    why = f"no answer within {timeout:g} s"
    if description.startswith("tcp:"):
        why += hint
    told = None
    if onPlace is not None:
        show = onPlace

        def told(place: int, waiting: int) -> None:
            show(claimedPool(factory.seatTicket), place, waiting)

    exchange = _exchange(factory, answerer, waitForSeat, told)
    try:
        login: KeycardLogin = await _within(
            Deferred.fromCoroutine(exchange),
            timeout + (waitForSeat or 0.0),
            clock,
            why,
        )
        return login
    except (ConnectionLost, ConnectionDone):
        if not description.startswith(("tls:", "ssl:")):
            raise
        raise LoginFailed(
            "the server closed the connection during the TLS handshake:"
            " does it speak TLS? (if not, use tcp:HOST:PORT)"
        ) from None
    finally:
        factory.disconnect()


async def _exchange(
    factory: KeycardClientFactory,
    answerer: IAnswerer | Sequence[IAnswerer],
    waitForSeat: float | None = None,
    onPlace: Callable[[int, int], object] | None = None,
) -> KeycardLogin:
    answerers = list(answerer) if isinstance(answerer, Sequence) else [answerer]
    root = await factory.getRootObject()
    offered = await root.callRemote("keycardClasses")
    if not (
        isinstance(offered, list | tuple) and all(isinstance(t, str) for t in offered)
    ):
        raise ProtocolError("the server's list of keycard kinds is malformed")
    refuseProtocol1(offered)
    wanted = answerers[0].keycardClass.kind
    if wanted not in offered:
        # SCRAM-SHA-256-PLUS is listed beside SCRAM: no kind of its own.
        bound = kindName(SCRAMKeycard.channelBoundType or "")
        shown = [kind for kind in offered if kind != bound]
        takes = ", ".join(printable(optionName(kind)) for kind in shown) or "none"
        raise KeycardRefused(
            f"the server takes none of these keycard kinds ({optionName(wanted)});"
            f" it takes: {takes}"
        )
    return await factory.loginWithKeycard(
        answerers, askServer=False, waitForSeat=waitForSeat, onPlace=onPlace
    )


def _endpointParts(description: str) -> list[str]:
    """
    The C{:}-separated parts of an endpoint description, with Twisted's
    backslash escapes undone.
    """
    parts, current, escaped = [], "", False
    for char in description:
        if escaped or char not in "\\:":
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            parts.append(current)
            current = ""
    parts.append(current)
    return parts


def checkEndpoint(endpoint: str) -> None:
    """
    Refuse a client endpoint whose TLS would not check the server: an
    C{ssl:} endpoint without C{hostname=} checks no host name (and, without
    C{caCertsDir=}, no certificate at all), so a man in the middle would
    see the login.

    @raise KeycardError: saying what to use instead.
    """
    parts = _endpointParts(endpoint)
    options = {part.partition("=")[0] for part in parts[1:] if "=" in part}
    if parts[0].lower() == "ssl" and "hostname" not in options:
        raise KeycardError(
            "ssl: does not check the server's certificate; "
            "connect with tls:HOST:PORT:trustRoots=DIR"
        )
