"""
How the bouncer service starts, and fails to start: its listeners on
endpoint strings parsed with errors an operator can act on, its store
opened from the data directory or a URL, the mock secret handed to its
checkers, and one line and a non-zero exit for anything wrong.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sqlite3
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import (
    IService,
    IServiceCollection,
    MultiService,
    Service,
)
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    clientFromString,
    serverFromString,
)
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import UnlistableError
from twisted.python.util import untilConcludes

from twisted_keycard._files import exposure
from twisted_keycard._mocks import IMockSecretTaker
from twisted_keycard.error import KeycardError
from twisted_keycard.service._datadir import RunLeases
from twisted_keycard.store.redis import (
    KeyEncryptionKey,
    RedisReplyError,
    RedisStore,
    RedisURL,
    SecretsChanging,
    WrongKeyEncryptionKey,
    isRedisURL,
    startupCheck,
)
from twisted_keycard.store.sqlite import SQLiteStore, connect

SERVER_EXAMPLES = "tcp:PORT[:interface=ADDRESS], ssl:PORT:privateKey=FILE, unix:PATH"
CLIENT_EXAMPLES = "tcp:HOST:PORT, tls:HOST:PORT:trustRoots=DIR, unix:PATH"

_UNKNOWN_TYPE = re.compile(r"Unknown endpoint type: '(.*)'")
_NOT_A_NUMBER = re.compile(r"invalid literal for int\(\) with base 10: (.*)")
_MISSING = re.compile(r"missing \d+ required positional argument[s]?: (.*)")
_UNEXPECTED = re.compile(r"unexpected keyword argument '(.*)'")


class EndpointError(KeycardError):
    """
    Raised for an endpoint string that names no usable endpoint; the
    message is one line naming the string and what is wrong with it.
    """


def _parameter(description: str, name: str) -> str | None:
    for part in description.split(":"):
        key, sep, value = part.partition("=")
        if sep and key == name:
            return value
    return None


def _reason(error: BaseException, description: str, examples: str) -> str:
    text = str(error)
    if isinstance(error, ValueError) and (m := _UNKNOWN_TYPE.search(text)):
        return f"unknown endpoint type {m.group(1)!r} (use {examples})"
    if isinstance(error, ValueError) and (m := _NOT_A_NUMBER.search(text)):
        return f"{m.group(1)} is not a number"
    if isinstance(error, TypeError) and (m := _MISSING.search(text)):
        missing = m.group(1).replace("'", "")
        if "port" in missing:
            return f"no port given (use {examples})"
        return f"missing {missing} (use {examples})"
    if isinstance(error, TypeError) and (m := _UNEXPECTED.search(text)):
        return f"unknown parameter {m.group(1)!r}"
    if isinstance(error, UnlistableError):
        roots = _parameter(description, "trustRoots")
        return f"trustRoots={roots} is not a directory of PEM certificates"
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror.lower()}"
    first = text.splitlines()[0] if text else ""
    return first or type(error).__name__


def serverEndpoint(
    reactor: Any, description: str, option: str = "--listen"
) -> IStreamServerEndpoint:
    """
    The server endpoint C{description} names, given as C{option}.

    @raise EndpointError: for a string that names none, or one whose key or
        certificate files cannot be read.
    """
    try:
        endpoint: IStreamServerEndpoint = serverFromString(reactor, description)
    except Exception as e:
        raise EndpointError(
            f"bad {option} {description!r}: {_reason(e, description, SERVER_EXAMPLES)}"
        ) from None
    return endpoint


def clientEndpoint(reactor: Any, description: str) -> IStreamClientEndpoint:
    """
    The client endpoint C{description} names.

    @raise EndpointError: for a string that names none, or whose trust
        roots cannot be read.
    """
    try:
        endpoint: IStreamClientEndpoint = clientFromString(reactor, description)
    except Exception as e:
        raise EndpointError(
            f"bad --connect {description!r}: {_reason(e, description, CLIENT_EXAMPLES)}"
        ) from None
    return endpoint


def describeListenError(error: CannotListenError) -> str:
    """
    One line for a port that could not be listened on: the address and the
    system's reason (C{address already in use}, C{permission denied}).
    """
    host = error.interface or "*"
    address = f"[{host}]" if ":" in host else host
    cause = error.socketError
    if isinstance(cause, OSError) and cause.strerror:
        why = cause.strerror.lower()
    else:
        why = str(cause) or "unknown reason"
    return f"cannot listen on {address}:{error.port}: {why}"


def storedMockSecret(path: str) -> bytes:
    """
    The mock secret of the SQLite store at C{path}, made and stored there
    if it has none.  Blocking: for startup, before the reactor runs.

    @raise sqlite3.Error: if the store cannot be read or written.
    @raise ValueError: if it has a format this version cannot read.
    """
    store = SQLiteStore(path, threaded=False)
    outcome: list[bytes | Failure] = []
    store.mockSecret().addBoth(outcome.append)
    store.close()
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    assert isinstance(result, bytes)
    return result


def giveMockSecret(checkers: Iterable[object], secret: bytes) -> None:
    """
    Hand C{secret} to every checker that makes mock challenges from one.
    """
    for checker in checkers:
        if IMockSecretTaker.providedBy(checker):
            IMockSecretTaker(checker).setMockSecret(secret)


PROGRAM = "keycard-bouncer"

ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], Any]

log = Logger(namespace=PROGRAM)


class StartupError(KeycardError):
    """
    Raised when the bouncer cannot start; its message is the one line the
    operator sees.
    """


def _failed(message: str, early: bool) -> StartupError:
    """
    The error that stops the start with C{message}, logged unless logging
    has not begun (twisted's logger would print it before twistd's one
    line; the process's standard error gets that line either way).
    """
    if not early:
        log.critical("{message}", message=message, event="bouncer.failed")
    return StartupError(message)


def exitHook(previous: ExceptHook, stream: Callable[[], Any]) -> ExceptHook:
    """
    An exception hook that writes an uncaught L{StartupError} as one line on
    C{stream()} and hands any other exception to C{previous}.
    """

    def hook(
        cls: type[BaseException], error: BaseException, tb: TracebackType | None
    ) -> None:
        if not isinstance(error, StartupError):
            previous(cls, error, tb)
            return
        out = stream()
        out.write(f"{PROGRAM}: {error}\n")
        out.flush()

    hook.keycardStartup = True  # type: ignore[attr-defined]
    return hook


def _realStderr() -> Any:
    # twistd sends sys.stderr to the log once logging starts.
    return sys.__stderr__ or sys.stderr


def installExitHook() -> None:
    """
    Make an uncaught L{StartupError} print one line on the process's
    standard error (Python then exits with status 1).  Only the outermost
    layer, the twistd plugin, calls this.
    """
    if not getattr(sys.excepthook, "keycardStartup", False):
        sys.excepthook = exitHook(sys.excepthook, _realStderr)


def describeAddress(port: IListeningPort) -> str:
    """
    Where a port listens: C{127.0.0.1:8800}, C{[::1]:8800}, or a path.
    """
    address: Any = port.getHost()
    host = getattr(address, "host", None)
    if host is None:
        name = getattr(address, "name", address)
        return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{address.port}"


class Listener(StreamServerEndpointService):
    """
    The bouncer's listening port: a port that cannot be listened on stops
    the start with one line, and once listening the log names the address
    and port.
    """

    _raiseSynchronously = True

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        factory: Any,
        description: str,
        bouncerName: str,
        serving: str = "bouncer",
    ) -> None:
        """
        @param serving: what the port serves, in the log line: the bouncer,
            or its metrics.
        """
        super().__init__(endpoint, factory)
        self.description = description
        self.bouncerName = bouncerName
        self.serving = serving

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            raise self._failed(describeListenError(e)) from None
        except Exception as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            if isinstance(e, OSError) and e.strerror:
                # A unix: socket's lock file: the path is in the line.
                reason = e.strerror.lower()
            raise self._failed(
                f"cannot listen on {self.description}: {reason}"
            ) from None

    def probe(self, early: bool = True) -> None:
        """
        Check, before twistd daemonizes, that a TCP port (C{tcp:},
        C{tcp6:}, C{ssl:}) can be listened on: bind a socket to it and close
        it at once.  Daemonized, a failure to listen after the fork reaches
        the operator only as twistd's truncated repr; found here, it is the
        one line the foreground prints.  (Another process may still take
        the port between this check and the start: that failure stays
        twistd's.)

        @param early: whether logging has not begun yet: the one line is
            then printed, not logged.
        @raise StartupError: if the port is taken, or needs privileges this
            process lacks.
        """
        endpoint: Any = self.endpoint
        # Twisted's TCP and TLS endpoints keep their port and interface in
        # these attributes (private, but unchanged since they were made).
        if not isinstance(
            endpoint, (TCP4ServerEndpoint, TCP6ServerEndpoint, SSL4ServerEndpoint)
        ):
            return
        port: int = endpoint._port
        interface: str = endpoint._interface
        if port == 0:
            return
        family = socket.AF_INET6 if ":" in interface else socket.AF_INET
        if isinstance(endpoint, TCP6ServerEndpoint) and not interface:
            family = socket.AF_INET6
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                # As twisted's port does: a port in TIME_WAIT is free.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(
                    (interface or ("::" if family == socket.AF_INET6 else ""), port)
                )
        except OSError as e:
            error = CannotListenError(interface, port, e)
            raise self._failed(describeListenError(error), early) from None

    def startService(self) -> None:
        super().startService()
        # Logged once the services before this one (the store) started.
        assert self._waitingForPort is not None
        self._waitingForPort.addCallback(self._listening)

    def _failed(self, message: str, early: bool = False) -> StartupError:
        return _failed(message, early)

    def _listening(self, port: IListeningPort | None) -> IListeningPort | None:
        if port is not None:
            log.info(
                # The name quoted: "bouncer bouncer listening" (the default
                # name) read as a stutter.
                '{serving} "{bouncerName}" listening on {address} ({kind})',
                serving=self.serving,
                bouncerName=self.bouncerName,
                address=describeAddress(port),
                kind=self.description.partition(":")[0],
                endpoint=self.description,
                event="bouncer.listening",
            )
        return port


class StoreCheck(Service):
    """
    Opens the SQLite store once, in the starting process and before the
    reactor runs, so that a store that cannot be opened (a missing
    directory, a file that is not a database, a newer format) stops the
    start rather than failing every login; then hands the store's mock
    secret to the checkers that make mock challenges, before any listener
    starts (so every bouncer of the store shows one challenge for a name).
    """

    checked = False

    def __init__(self, path: str, checkers: Iterable[object] = ()) -> None:
        self.path = path
        self.checkers = list(checkers)

    def check(self, early: bool = False) -> None:
        """
        Open the store and hand its mock secret to the checkers, once: at
        start, or earlier (before twistd daemonizes, see L{checkEarly}).

        @param early: whether logging has not begun yet: the one line is
            then printed, not logged.
        @raise StartupError: if the store cannot be opened.
        """
        if self.checked:
            return
        try:
            connect(self.path).close()
            giveMockSecret(self.checkers, storedMockSecret(self.path))
        except (sqlite3.Error, OSError, ValueError) as e:
            reason = (
                e.strerror.lower() if isinstance(e, OSError) and e.strerror else str(e)
            )
            message = f"cannot open the store sqlite:{self.path}: {reason}"
            raise _failed(message, early) from None
        self.checked = True

    def startService(self) -> None:
        self.check()
        super().startService()


def refuseExposed(paths: list[Path]) -> None:
    """
    Stop twistd with one line if a file or directory holding secrets (the
    token signing keys, verifiers) is open to other local users, who could
    forge tokens with them.

    @raise SystemExit: naming the first such path.
    """
    for path in paths:
        problem = exposure(path)
        if problem is not None:
            raise SystemExit(
                f"{PROGRAM}: refusing to start: {problem}, open to other"
                " users; make it 0600 (directories 0700), or start with"
                " --insecure-permissions"
            )


#: Where the Redis store's password is read from without a password file.
PASSWORD_ENVIRONMENT = "KEYCARD_REDIS_PASSWORD"  # noqa: S105 - a name

STORE_EXAMPLES = "sqlite:PATH, redis://HOST:PORT/DB, rediss://..., redis+sentinel://..."


def storePassword(passwordFile: str | None) -> str | None:
    """
    The Redis store's password: the first line of C{passwordFile}, else
    C{$KEYCARD_REDIS_PASSWORD}, else none.

    @raise OSError: if the file cannot be read.
    @raise ValueError: if it is empty.
    """
    if passwordFile is not None:
        lines = Path(passwordFile).read_text().splitlines()
        if not lines or not lines[0]:
            raise ValueError(f"{passwordFile} holds no password")
        return lines[0]
    return os.environ.get(PASSWORD_ENVIRONMENT) or None


def sqlitePath(url: str) -> str:
    """
    The file of a C{sqlite:PATH} store URL.

    @raise ValueError: for a URL that names no store this version knows.
    """
    kind, _, path = url.partition(":")
    if kind != "sqlite" or not path:
        raise ValueError(f"unknown store {url!r}; use {STORE_EXAMPLES}")
    return path


async def openStore(
    url: str,
    reactor: Any,
    password: str | None = None,
    keyEncryptionKey: KeyEncryptionKey | None = None,
) -> Any:
    """
    Open the store at C{url}, for the C{keycard} command.

    @param keyEncryptionKey: what a Redis store's secrets are wrapped
        under (see L{RedisStore}).
    @raise ValueError: for a URL that names no store.
    @raise twisted_keycard.store.redis.StoreUnavailable: if Redis cannot be
        reached.
    @raise twisted_keycard.store.redis.WrongKeyEncryptionKey: if its
        secrets are wrapped under another key.
    """
    if isRedisURL(url):
        return await RedisStore.open(
            url, reactor, password=password, keyEncryptionKey=keyEncryptionKey
        )
    return await SQLiteStore.open(sqlitePath(url), reactor)


#: The flag that starts a bouncer on a Redis that takes commands without a
#: password.
INSECURE_REDIS = "--insecure-redis"


def isLoopback(host: str) -> bool:
    """
    Whether C{host} names this machine (C{localhost}, 127.0.0.0/8, ::1).
    """
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def plainTCPWarning(url: RedisURL) -> str | None:
    """
    The warning for a store reached over plain TCP (no TLS) on another
    host, where its password and every revocation cross the network in
    clear; C{None} otherwise.
    """
    if url.tls:
        return None
    remote = [f"{h}:{p}" for h, p in url.hosts if not isLoopback(h)]
    if not remote:
        return None
    return (
        f"the Redis store {url} is reached over plain TCP on another host"
        f" ({', '.join(remote)}): its password and revocations cross the"
        " network in clear; use rediss:// (TLS)"
    )


class RedisCheck(Service):
    """
    Reaches the Redis store once, in the starting process and before the
    reactor runs, so that a store that cannot be reached (or refuses the
    password, or takes commands without one, or holds secrets wrapped
    under another key-encryption key) stops the start with one line;
    wraps secrets stored in clear before wrapping; hands its mock secret
    to the checkers before any listener starts, and warns about Redis
    settings that lose revocations in a crash and about plain TCP to
    another host.
    """

    def __init__(
        self,
        url: RedisURL,
        password: str | None,
        keyEncryptionKey: KeyEncryptionKey,
        checkers: Iterable[object] = (),
        *,
        insecure: bool = False,
        keyFile: Path | None = None,
    ) -> None:
        """
        @param insecure: start even if Redis takes commands without a
            password (L{INSECURE_REDIS}).
        @param keyFile: where C{keyEncryptionKey} was read from, for the
            error when it does not open the secrets.
        """
        self.url = url
        self.password = password
        self.keyEncryptionKey = keyEncryptionKey
        self.checkers = list(checkers)
        self.insecure = insecure
        self.keyFile = keyFile

    checked = False

    def check(self, early: bool = False) -> None:
        """
        Reach the store and hand its mock secret to the checkers, once: at
        start, or earlier (before twistd daemonizes, see L{checkEarly}).

        @param early: whether logging has not begun yet: the one line is
            then printed, not logged.
        @raise StartupError: if the store cannot be reached.
        """
        if self.checked:
            return
        try:
            found = startupCheck(self.url, self.password, self.keyEncryptionKey)
        except (OSError, RedisReplyError, ValueError, SecretsChanging) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            message = f"cannot open the store {self.url}: {reason}"
            raise _failed(message, early) from None
        except WrongKeyEncryptionKey as e:
            where = f" {self.keyFile}" if self.keyFile is not None else ""
            raise _failed(
                f"cannot read the secrets of the store {self.url}: {e}; the"
                f" key-encryption key{where} must be the one of the store's"
                " other hosts",
                early,
            ) from None
        if found.openWithoutPassword and not self.insecure:
            raise _failed(
                f"refusing to start: the Redis store {self.url} takes commands"
                " without a password (anyone who reaches it can revoke, read"
                " and write its records); set one (requirepass) and give it"
                f" with --store-password-file FILE, or start with {INSECURE_REDIS}",
                early,
            )
        if found.openWithoutPassword:
            log.warn(
                "the Redis store {url} takes commands without a password:"
                " started anyway ({flag}); anyone who reaches it can revoke,"
                " read and write its records",
                url=str(self.url),
                flag=INSECURE_REDIS,
                event="store.insecure",
            )
        if found.wrapped:
            log.warn(
                "wrapped the keyring and mock secret of the store {url}, kept"
                " in clear before, under key-encryption key {kek}",
                url=str(self.url),
                kek=self.keyEncryptionKey.id,
                event="store.wrapped",
            )
        giveMockSecret(self.checkers, found.mockSecret)
        for warning in found.warnings:
            log.warn("{warning}", warning=warning, event="store.settings")
        plain = plainTCPWarning(self.url)
        if plain is not None:
            log.warn("{warning}", warning=plain, event="store.plaintext")
        self.checked = True

    def startService(self) -> None:
        self.check()
        super().startService()


class StoreService(Service):
    """
    Closes a store when the service stops.
    """

    def __init__(self, store: Any) -> None:
        self.store = store

    def stopService(self) -> Deferred[None]:
        super().stopService()
        closed: Deferred[None] = self.store.close()
        return closed


def daemonizing(options: Any) -> bool:
    """
    Whether twistd, whose plugin got C{options}, will daemonize: it forks
    after the plugin made its service, and its parent then reports a
    failure to start only as a repr cut at 100 bytes.
    """
    parent = _twistdOptions(options)
    return parent is not None and "nodaemon" in parent and not parent["nodaemon"]


def dropsPrivileges(options: Any) -> bool:
    """
    Whether twistd, whose plugin got C{options}, switches to another user
    or group once its ports are open.
    """
    parent = _twistdOptions(options)
    if parent is None:
        return False
    return parent.get("uid") is not None or parent.get("gid") is not None


def _twistdOptions(options: Any) -> Any:
    parent = getattr(options, "parent", None)
    return parent if hasattr(parent, "get") else None


def checkEarly(top: IServiceCollection, dropsPrivileges: bool = False) -> None:
    """
    Before twistd daemonizes: open the store (L{StoreCheck},
    L{RedisCheck}) and probe every TCP port to listen on (L{Listener.probe})
    among the services of C{top}, so that what would stop the start stops
    it now, with the one line the foreground prints.

    @param dropsPrivileges: whether twistd switches to another user once
        its ports are open (C{--uid}, C{--gid}): the SQLite store is then
        opened only after, so that none of its files is made root's.
    @raise StartupError: for the first check that fails.
    """
    for service in _walk(top):
        if isinstance(service, RedisCheck) or (
            isinstance(service, StoreCheck) and not dropsPrivileges
        ):
            service.check(early=True)
        elif isinstance(service, Listener):
            service.probe(early=True)


def _walk(top: IServiceCollection) -> Iterable[IService]:
    for service in top:
        yield service
        if IServiceCollection.providedBy(service):
            yield from _walk(service)


class LeaseRecord(Service):
    """
    Records the running bouncer's lease in its data directory (see
    L{RunLeases}) and, before the bouncer starts, hands it the leases of
    the runs that ended there, to release at once (a bouncer restarted
    after a C{kill -9} frees the seats of its own clients then, not once its
    old lease runs out).
    """

    def __init__(
        self, leases: RunLeases, lease: Any, requesterNames: Iterable[str]
    ) -> None:
        """
        @param lease: the bouncer's L{twisted_keycard.bouncer.Bouncer.lease}.
        @param requesterNames: the requester names of the service's own
            faces (PB listener, HTTP face): the keycards of dead runs issued
            through them are released; those of remote requesters are left
            for them to adopt.
        """
        self.leases = leases
        self.lease = lease
        self.requesterNames = frozenset(requesterNames)

    def startService(self) -> None:
        try:
            dead = self.leases.takeDead()
            self.leases.hold(self.lease.holderId)
        except OSError as e:
            reason = e.strerror.lower() if e.strerror else str(e)
            log.warn(
                "cannot record this bouncer's lease in {directory}: {reason};"
                " after a crash, its seats are freed only once its lease runs out",
                directory=str(self.leases.directory),
                reason=reason,
                event="bouncer.warning",
            )
            dead = []
        self.lease.releaseDead(dead, self.requesterNames)
        super().startService()

    def stopService(self) -> None:
        super().stopService()
        self.leases.close()


class Daemonized(MultiService):
    """
    The bouncer's services when twistd daemonizes.  What could only fail
    after twistd forked (a port another process took since L{checkEarly},
    a C{unix:} socket, a store opened once privileges are dropped) stops
    the start with the same one line as in the foreground, written on the
    standard error twistd's parent process still has (a copy of it is
    kept until the start is over); twistd's parent, which would print the
    error's repr cut at 100 bytes, adds nothing (see L{quietParent}).
    """

    def __init__(self, stderr: int) -> None:
        """
        @param stderr: a copy of the starting process's standard error,
            closed once the start is over.
        """
        super().__init__()
        self.stderr: int | None = stderr

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except StartupError as e:
            self._tell(e)
            raise

    def startService(self) -> None:
        try:
            super().startService()
        except StartupError as e:
            self._tell(e)
            raise
        self._close()

    def _tell(self, error: StartupError) -> None:
        if self.stderr is not None:
            try:
                os.write(self.stderr, f"{PROGRAM}: {error}\n".encode())
            finally:
                self._close()

    def _close(self) -> None:
        # Held open, it would keep the terminal's pipe open as long as the
        # daemon runs.
        if self.stderr is not None:
            os.close(self.stderr)
            self.stderr = None


def _reported(data: bytes) -> bool:
    """
    Whether what a daemonized twistd's child wrote on its status pipe is
    a L{StartupError}, whose one line it wrote itself.
    """
    line = traceback.format_exception_only(StartupError, StartupError("-"))[-1]
    name = line.partition(":")[0]
    return data.startswith(f"1 {name}:".encode())


#: Seconds a daemonizing twistd's parent waits, after its child reported a
#: failed start, for the child to remove its pid file.
PIDFILE_WAIT = 5.0


def quietParent() -> None:
    """
    Make the parent process of a daemonizing twistd (this one, before it
    forks) exit with status 1 and print nothing more when its child reports
    a L{StartupError}, which L{Daemonized} has printed as one line; any
    other failure is printed as twistd prints it.  Either way it exits once
    the child has removed its pid file (twistd's child removes it just
    after it reports), at most L{PIDFILE_WAIT} seconds later, so that a
    failed start leaves none behind when the command returns (it raced
    before, on a busy machine).  twistd has no hook for
    this: its C{UnixApplicationRunner._waitForStart} is replaced, in this
    process only (which exits once its child has started); a twistd without
    it is left alone.
    """
    try:
        from twisted.scripts._twistd_unix import UnixApplicationRunner
    except ImportError:
        return
    original = getattr(UnixApplicationRunner, "_waitForStart", None)
    if original is None or getattr(original, "keycardQuiet", False):
        return

    def _waitForStart(self: Any, readPipe: int) -> int:
        data = untilConcludes(os.read, readPipe, 100)
        if data == b"0":
            return 0
        # The child removes its pid file just after it reports: exit once
        # it is gone, so that none is left when the command returns.
        pidfile = getattr(self, "config", {}).get("pidfile")
        deadline = time.monotonic() + PIDFILE_WAIT
        while pidfile and os.path.exists(pidfile) and time.monotonic() < deadline:
            time.sleep(0.01)
        if not _reported(data):
            # As twistd does.
            out = sys.__stderr__ or sys.stderr
            untilConcludes(
                out.write,
                f"An error has occurred: {data[2:]!r}\n"
                "Please look at log file for more information.\n",
            )
        return 1

    _waitForStart.keycardQuiet = True  # type: ignore[attr-defined]
    UnixApplicationRunner._waitForStart = _waitForStart  # type: ignore[method-assign]
