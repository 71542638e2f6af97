"""
Tests for L{twisted_keycard.store.redis.RedisStore}: the store contracts
against a real C{redis-server}, and what only Redis does: keys that expire
by themselves, a key prefix per deployment, pushed changes, revocations
followed through the stream, and writes queued while Redis is down.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard.store.redis import RedisStore

from ._redis import RedisServer, reactor, spin
from .storecontract import (
    KeycardStoreContract,
    KeycardStoreLimitsContract,
    KeyringStoreContract,
    LeaseStoreContract,
    RevocationStoreContract,
    StoreHealthContract,
    ThrottleStoreContract,
)

# A real redis-server: a process and sockets.
pytestmark = pytest.mark.integration

_prefixes = itertools.count()


class RedisTestCase(SynchronousTestCase):
    """
    One C{redis-server} for the class; each test has a key prefix of its
    own, so tests share nothing.
    """

    server: RedisServer

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = RedisServer(Path(SynchronousTestCase().mktemp()).resolve())
        cls.server.start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()

    def url(self) -> str:
        return f"{self.server.url}?prefix=t{next(_prefixes)}:"

    def openStore(self, url: str | None = None, **kw: Any) -> RedisStore:
        kw.setdefault("clock", Clock())
        store: RedisStore = spin(RedisStore.open(url or self.url(), reactor, **kw))
        self.addCleanup(lambda: spin(store.close()))
        return store


class RedisContractTests(
    KeycardStoreContract,
    KeycardStoreLimitsContract,
    RevocationStoreContract,
    KeyringStoreContract,
    ThrottleStoreContract,
    LeaseStoreContract,
    StoreHealthContract,
    RedisTestCase,
):
    """
    The contracts, each call waited for on the real reactor.
    """

    def makeStore(self) -> RedisStore:
        return self.openStore()

    def resultOf(self, d: Deferred[Any]) -> Any:
        return spin(d)

    def failureOf(self, d: Deferred[Any], *errors: type[BaseException]) -> Any:
        outcome: list[Any] = []
        d.addBoth(outcome.append)
        spin(d)
        failure = outcome[0]
        self.assertTrue(failure.check(*errors), failure)
        return failure
