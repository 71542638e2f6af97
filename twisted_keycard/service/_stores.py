"""
The store a bouncer service or the C{keycard} command works on, from its
URL: C{sqlite:PATH}, or a Redis URL (C{redis://}, C{rediss://},
C{redis+sentinel://}), whose password comes from a file or
C{$KEYCARD_REDIS_PASSWORD}, never from the command line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from twisted_keycard.service._mocksecret import giveMockSecret
from twisted_keycard.service._startup import PROGRAM, StartupError
from twisted_keycard.store.redis._blocking import RedisReplyError, startupCheck
from twisted_keycard.store.redis._store import RedisStore
from twisted_keycard.store.redis._url import RedisURL, isRedisURL
from twisted_keycard.store.sqlite._store import SQLiteStore

#: Where the Redis store's password is read from without a password file.
PASSWORD_ENVIRONMENT = "KEYCARD_REDIS_PASSWORD"  # noqa: S105 - a name

STORE_EXAMPLES = "sqlite:PATH, redis://HOST:PORT/DB, rediss://..., redis+sentinel://..."

log = Logger(namespace=PROGRAM)


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


async def openStore(url: str, reactor: Any, password: str | None = None) -> Any:
    """
    Open the store at C{url}, for the C{keycard} command.

    @raise ValueError: for a URL that names no store.
    @raise twisted_keycard.store.redis.StoreUnavailable: if Redis cannot be
        reached.
    """
    if isRedisURL(url):
        return await RedisStore.open(url, reactor, password=password)
    return await SQLiteStore.open(sqlitePath(url), reactor)


class RedisCheck(Service):
    """
    Reaches the Redis store once, in the starting process and before the
    reactor runs, so that a store that cannot be reached (or refuses the
    password) stops the start with one line; hands its mock secret to the
    checkers before any listener starts, and warns about Redis settings
    that lose revocations in a crash.
    """

    def __init__(
        self, url: RedisURL, password: str | None, checkers: Iterable[object] = ()
    ) -> None:
        self.url = url
        self.password = password
        self.checkers = list(checkers)

    def startService(self) -> None:
        try:
            secret, warnings = startupCheck(self.url, self.password)
        except (OSError, RedisReplyError, ValueError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            message = f"cannot open the store {self.url}: {reason}"
            log.critical("{message}", message=message, event="bouncer.failed")
            raise StartupError(message) from None
        giveMockSecret(self.checkers, secret)
        for warning in warnings:
            log.warn("{warning}", warning=warning, event="store.settings")
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
