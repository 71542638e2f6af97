"""
A bouncer and the store it owns as one L{Service}, for applications that
embed the bouncer of a data directory.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred

from twisted_keycard.bouncer._bouncer import Bouncer
from twisted_keycard.bouncer._policy import TokenPolicy
from twisted_keycard.scram._server import SCRAMVerifiers
from twisted_keycard.service._datadir import DataDir
from twisted_keycard.service._mocksecret import giveMockSecret, storedMockSecret
from twisted_keycard.service._stores import sqlitePath, storePassword
from twisted_keycard.store.redis._blocking import startupCheck
from twisted_keycard.store.redis._store import RedisStore
from twisted_keycard.store.redis._url import isRedisURL, parseRedisURL
from twisted_keycard.store.sqlite._store import SQLiteStore


class BouncerService(MultiService):
    """
    A L{Bouncer} and its store (an L{SQLiteStore}, or a C{RedisStore}),
    which it alone closes: starting the service starts the bouncer;
    stopping it stops the bouncer, then closes the store (and stops its
    thread, or its connections).  Set it as the child of an
    application (or start and stop it yourself) and hand C{bouncer} to a
    L{twisted_keycard.KeycardRoot}.

    @ivar bouncer: the bouncer.
    @ivar store: its store.
    """

    def __init__(self, bouncer: Bouncer, store: SQLiteStore | RedisStore) -> None:
        super().__init__()
        self.bouncer = bouncer
        self.store: Any = store
        bouncer.setServiceParent(self)

    @classmethod
    def fromDataDir(
        cls,
        path: str | Path,
        reactor: Any,
        checkers: Iterable[ICredentialsChecker] | None = None,
        **options: Any,
    ) -> BouncerService:
        """
        The bouncer of a data directory made by C{keycard init}: its store
        (C{keycard.db}, shared with the C{keycard} command and any bouncer
        service on it) and, unless C{checkers} are given, its users' SCRAM
        verifiers (C{users.scram}, read again when it changes).

        @param reactor: the reactor: the bouncer's clock, and where the
            store delivers its results.
        @param options: L{Bouncer}'s keyword arguments (C{name},
            C{duration}, C{quota}, ...); C{tokens} is a default
            L{TokenPolicy} unless given, as in the bouncer service.
        @raise twisted_keycard.service.NoDataDir: if C{path} is not a data
            directory.
        @raise sqlite3.Error: if its SQLite store cannot be opened.
        @raise OSError: if its Redis store cannot be reached (see
            L{twisted_keycard.store.redis}).
        """
        dataDir = DataDir.open(path)
        if checkers is None:
            checkers = [
                SCRAMVerifiers.fromFile(dataDir.users, clock=reactor),
            ]
        options.setdefault("tokens", TokenPolicy())
        checkers = list(checkers)
        store: Any
        if isRedisURL(dataDir.store):
            # A data directory made with keycard init --store redis://...
            url = parseRedisURL(dataDir.store)
            password = storePassword(dataDir.storePasswordFile)
            secret, _ = startupCheck(url, password)
            store = RedisStore(url, reactor, password=password)
        else:
            path = sqlitePath(dataDir.store)
            secret = storedMockSecret(path)
            store = SQLiteStore(path, reactor)
        # Mock challenges the same as the bouncer service's on this store.
        giveMockSecret(checkers, secret)
        return cls(Bouncer(checkers, store, clock=reactor, **options), store)

    def stopService(self) -> Deferred[None]:
        stopped: Deferred[Any] = super().stopService()
        return stopped.addBoth(lambda _: self.store.close())
