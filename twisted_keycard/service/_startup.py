"""
How the bouncer service fails to start: one line and a non-zero exit, never
a traceback or a usage dump, and before twistd reports a daemon started, so
that C{twistd keycard-bouncer} (daemonized or not) exits non-zero.

Failures found while the options are read raise C{SystemExit} with the
line.  Those found later, while twistd builds and starts the service (a
port in use, a store that cannot open), raise L{StartupError}, which twistd
lets through (removing its pid file and telling a waiting daemon parent),
and which the hook set by L{installExitHook} prints as one line.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Service
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.logger import Logger

from twisted_keycard._secretfiles import exposure
from twisted_keycard.error import KeycardError
from twisted_keycard.service._endpoints import describeListenError
from twisted_keycard.service._mocksecret import giveMockSecret, storedMockSecret
from twisted_keycard.store.sqlite._schema import connect

PROGRAM = "keycard-bouncer"

ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], Any]

log = Logger(namespace=PROGRAM)


class StartupError(KeycardError):
    """
    Raised when the bouncer cannot start; its message is the one line the
    operator sees.
    """


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
            raise self._failed(
                f"cannot listen on {self.description}: {reason}"
            ) from None

    def startService(self) -> None:
        super().startService()
        # Logged once the services before this one (the store) started.
        assert self._waitingForPort is not None
        self._waitingForPort.addCallback(self._listening)

    def _failed(self, message: str) -> StartupError:
        log.critical("{message}", message=message, event="bouncer.failed")
        return StartupError(message)

    def _listening(self, port: IListeningPort | None) -> IListeningPort | None:
        if port is not None:
            log.info(
                "{serving} {bouncerName} listening on {address} ({kind})",
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

    def __init__(self, path: str, checkers: Iterable[object] = ()) -> None:
        self.path = path
        self.checkers = list(checkers)

    def startService(self) -> None:
        try:
            connect(self.path).close()
            giveMockSecret(self.checkers, storedMockSecret(self.path))
        except (sqlite3.Error, OSError, ValueError) as e:
            reason = (
                e.strerror.lower() if isinstance(e, OSError) and e.strerror else str(e)
            )
            message = f"cannot open the store sqlite:{self.path}: {reason}"
            log.critical("{message}", message=message, event="bouncer.failed")
            raise StartupError(message) from None
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
