"""
The master's side of Buildbot with keycards: a service in C{master.cfg}
that makes the master's PB ports keycard roots, over Buildbot's own
dispatcher (its workers' passwords and its realm).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from buildbot.util.service import BuildbotService
from buildbot.worker.protocols.manager.pb import Dispatcher
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from twisted_keycard.bouncer import DEFAULT_DURATION
from twisted_keycard.pb import KeycardRoot, KeycardServerFactory, portalCheckers
from twisted_keycard.service import BouncerService, DataDir

#: The requester name of the master's PB ports, for C{keycard revoke
#: --requester}.
REQUESTER = "buildbot"


@attrs.frozen
class KeycardSettings:
    """
    How the master's PB ports take keycards (see L{useKeycards}).
    """

    dataDir: Path
    usersFile: bool = False
    stockLogin: bool = False
    duration: float = DEFAULT_DURATION
    maxLifetime: float | None = None
    renewEvery: float | None = None
    requesterName: str = REQUESTER


class KeycardDispatcher(Dispatcher):
    """
    Buildbot's PB dispatcher (one per port: its portal, its workers'
    passwords, its realm) serving a L{KeycardRoot} over a bouncer of the
    data directory, which starts and stops with it.
    """

    log = Logger()

    def __init__(
        self, config_portstr: Any, portstr: str, settings: KeycardSettings, reactor: Any
    ) -> None:
        super().__init__(config_portstr, portstr)
        checkers = None if settings.usersFile else portalCheckers(self.portal)
        self.bouncerService = BouncerService.fromDataDir(
            settings.dataDir,
            reactor,
            checkers,
            name=f"{settings.requesterName}-bouncer",
            duration=settings.duration,
            maxLifetime=settings.maxLifetime,
        )
        self.root = KeycardRoot(
            self.bouncerService.bouncer,
            self.portal,
            settings.requesterName,
            clock=reactor,
            renewEvery=settings.renewEvery,
            stockLogin=settings.stockLogin,
        )
        self.serverFactory = KeycardServerFactory(self.root, clock=reactor)
        self.log.info(
            "PB port {portstr} takes keycards (data directory {dataDir},"
            " passwords from {source}{stock})",
            portstr=portstr,
            dataDir=str(settings.dataDir),
            source="users.scram" if settings.usersFile else "master.cfg",
            stock=", and PB's own login" if settings.stockLogin else "",
        )

    def startService(self) -> Any:
        self.bouncerService.startService()
        return super().startService()

    @inlineCallbacks
    def stopService(self) -> Any:
        yield super().stopService()
        yield self.bouncerService.stopService()


class KeycardService(BuildbotService):
    """
    A service of the master that makes the PB ports it opens from now on
    L{KeycardDispatcher}s.  Buildbot configures its services before its
    workers, so every port of the first configuration takes keycards.
    """

    name = "keycards"
    log = Logger()

    def checkConfig(self, dataDir: str, **options: Any) -> None:
        KeycardSettings(Path(dataDir), **options)

    def reconfigService(self, dataDir: str, **options: Any) -> Deferred[None]:
        path = Path(dataDir)
        if not path.is_absolute():
            path = Path(self.master.basedir or ".") / path
        DataDir.open(path)
        settings = KeycardSettings(path, **options)
        manager = self.master.pbmanager
        if manager.dispatchers:
            self.log.warn(
                "PB ports already open keep their login until the master restarts"
            )
        manager.dispatcher_class = _dispatcherFactory(settings, self.master.reactor)
        result: Deferred[None] = super().reconfigService()
        return result


def _dispatcherFactory(
    settings: KeycardSettings, reactor: Any
) -> Callable[[Any, str], KeycardDispatcher]:
    def dispatcher(config_portstr: Any, portstr: str) -> KeycardDispatcher:
        return KeycardDispatcher(config_portstr, portstr, settings, reactor)

    return dispatcher


def useKeycards(
    config: dict[str, Any],
    dataDir: str = "keycard-data",
    *,
    usersFile: bool = False,
    stockLogin: bool = False,
    duration: float = DEFAULT_DURATION,
    maxLifetime: float | None = None,
    renewEvery: float | None = None,
) -> None:
    """
    Make the master's PB ports take keycards: add a L{KeycardService} to
    C{config["services"]}.  Call it at the end of C{master.cfg}.

    @param config: the C{BuildmasterConfig} dictionary.
    @param dataDir: a data directory made by C{keycard init} (relative to
        the master's directory): its store keeps the keycards, revocations
        and the server key the SCRAM salts are made from.
    @param usersFile: check the data directory's C{users.scram}
        (C{keycard user add}) instead of the passwords in C{master.cfg}.
    @param stockLogin: also answer PB's own login on the same port (old
        workers, C{buildbot sendchange}, C{buildbot try}) while clients
        move over.
    @param duration: seconds a keycard is valid; renewed while its worker
        stays connected.
    @param maxLifetime: seconds after which a worker must log in again;
        C{None} for no bound.
    @param renewEvery: seconds between renewals; a third of C{duration} by
        default.
    """
    KeycardSettings(
        Path(dataDir),
        usersFile=usersFile,
        stockLogin=stockLogin,
        duration=duration,
        maxLifetime=maxLifetime,
        renewEvery=renewEvery,
    )
    services = config.setdefault("services", [])
    services.append(
        KeycardService(
            dataDir,
            usersFile=usersFile,
            stockLogin=stockLogin,
            duration=duration,
            maxLifetime=maxLifetime,
            renewEvery=renewEvery,
        )
    )
