"""
Tests for L{twisted_keycard.store.redis.RedisStore}: the store contracts
against a real C{redis-server}, and what only Redis does: keys that expire
by themselves, a key prefix per deployment, pushed changes, revocations
followed through the stream, writes queued while Redis is down, and the
keyring and mock secret wrapped under a key-encryption key.
"""

from __future__ import annotations

import base64
import itertools
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard.error import QuotaExceeded
from twisted_keycard.store import Revocation
from twisted_keycard.store.redis import (
    KeyEncryptionKey,
    NoKeyEncryptionKey,
    RedisStore,
    WrongKeyEncryptionKey,
    parseRedisURL,
    startupCheck,
)
from twisted_keycard.store.redis._lua import keyFields
from twisted_keycard.tokens import Keyring

from ._redis import RedisServer, reactor, spin
from .storecontract import (
    KeycardStoreContract,
    KeycardStoreLimitsContract,
    KeyringStoreContract,
    LeaseStoreContract,
    RevocationStoreContract,
    SeatQueueContract,
    StoreHealthContract,
    ThrottleStoreContract,
    record,
)

# A real redis-server: a process and sockets.
pytestmark = pytest.mark.integration

_prefixes = itertools.count()

#: The key-encryption key of the stores these tests open.
KEK = KeyEncryptionKey.generate()


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
        kw.setdefault("keyEncryptionKey", KEK)
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
    SeatQueueContract,
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


class RedisSeatIndexTests(RedisTestCase):
    """
    The index of an avatar's seats of a pool (C{ix:sa:}), as C{redis-cli}
    sees it.
    """

    def test_indexedAtRenewal(self) -> None:
        """
        A seat takes its place in C{ix:sa:LENGTH:POOL:AVATAR} when granted
        and leaves it when released; one granted by an earlier version
        (no such index) enters it at its first renewal, and counts against
        the cap from then.
        """
        url = self.url()
        prefix = url.partition("?prefix=")[2]
        key = f"{prefix}ix:sa:1:p:alice"
        store = self.openStore(url)

        def add(keycardId: str) -> Deferred[None]:
            return store.addWithin(record(keycardId, seatPool="p"), None, 5, 1)

        spin(add("k1"))
        self.assertEqual(self.server.cli("ZRANGE", key, "0", "-1"), "k1")
        spin(store.release("k1"))
        self.assertEqual(self.server.cli("ZCARD", key), "0")
        spin(add("k2"))
        # As an earlier version left it: the seat is held, not indexed.
        self.server.cli("DEL", key)
        spin(store.renew("k2", 170.0))
        self.assertEqual(self.server.cli("ZRANGE", key, "0", "-1"), "k2")
        with self.assertRaises(QuotaExceeded) as refused:
            spin(add("k3"))
        self.assertEqual(refused.exception.limit, "seats-per-avatar")


class RedisSecretsTests(RedisTestCase):
    """
    The keyring and mock secret wrapped in Redis under the key-encryption
    key, as C{redis-cli} sees them.
    """

    def prefixed(self) -> tuple[str, str]:
        url = self.url()
        return url, url.partition("?prefix=")[2]

    def test_wrappedAtRest(self) -> None:
        """
        What Redis holds of the keyring and mock secret is wrapped: neither
        the keys' bytes nor the mock secret's are in any value.
        """
        url, prefix = self.prefixed()
        store = self.openStore(url)
        keyring = Keyring.generate(1000.0)
        spin(store.saveKeyring(keyring))
        mock = spin(store.mockSecret())
        values = [
            *self.server.cli("HGETALL", f"{prefix}keyring").split("\n"),
            self.server.cli("GET", f"{prefix}mock"),
            self.server.cli("GET", f"{prefix}kek"),
        ]
        for secret in (keyring.signing.secret, mock):
            for shown in (secret.hex(), base64.b64encode(secret).decode()):
                self.assertFalse(any(shown in v for v in values), shown)
        self.assertTrue(all(v.startswith("kw1:") for v in values[1::2]))
        self.assertEqual(spin(store.loadKeyring()), keyring)
        self.assertEqual(spin(self.openStore(url).mockSecret()), mock)

    def test_clearStoreWrapped(self) -> None:
        """
        A store written before wrapping (clear JSON and base64) is wrapped
        when a store with the key-encryption key opens it; its keyring and
        mock secret are the same, and its version stays.
        """
        url, prefix = self.prefixed()
        keyring = Keyring.generate(1000.0)
        fields = keyFields(keyring)
        self.server.cli("HSET", f"{prefix}keyring", *fields)
        self.server.cli("SET", f"{prefix}keyring:version", "3")
        self.server.cli("SET", f"{prefix}mock", base64.b64encode(b"m" * 32).decode())
        store = self.openStore(url)
        self.assertTrue(
            self.server.cli("HGET", f"{prefix}keyring", fields[0]).startswith("kw1:")
        )
        self.assertEqual(spin(store.loadKeyring()), keyring)
        self.assertEqual(spin(store.mockSecret()), b"m" * 32)
        self.assertEqual(spin(store.keyringVersion()), 3)

    def test_wrongKey(self) -> None:
        """
        A store opened with another key-encryption key fails to open, with
        the error naming both keys.
        """
        url, _ = self.prefixed()
        spin(self.openStore(url).saveKeyring(Keyring.generate(1000.0)))
        other = KeyEncryptionKey.generate()
        with self.assertRaises(WrongKeyEncryptionKey) as caught:
            self.openStore(url, keyEncryptionKey=other)
        self.assertIn(other.id, str(caught.exception))
        self.assertIn(KEK.id, str(caught.exception))

    def test_tampered(self) -> None:
        """
        A wrapped key changed in Redis (one character), or the value of one
        key moved to another key id, is refused at load.
        """
        url, prefix = self.prefixed()
        store = self.openStore(url)
        keyring, _ = Keyring.generate(1000.0).rotate(1100.0, 3600.0)
        spin(store.saveKeyring(keyring))
        first, second = (key.kid for key in keyring.keys)
        one = self.server.cli("HGET", f"{prefix}keyring", first)
        two = self.server.cli("HGET", f"{prefix}keyring", second)
        self.server.cli("HSET", f"{prefix}keyring", first, two, second, one)
        with self.assertRaises(WrongKeyEncryptionKey):
            spin(store.loadKeyring())
        changed = one[:-3] + ("A" if one[-3] != "A" else "B") + one[-2:]
        self.server.cli("HSET", f"{prefix}keyring", first, changed, second, two)
        with self.assertRaises(WrongKeyEncryptionKey):
            spin(store.loadKeyring())

    def test_plantedClearKey(self) -> None:
        """
        A keyring in clear written into a wrapped store (by someone who can
        write Redis, without the key-encryption key) is refused, not used.
        """
        url, prefix = self.prefixed()
        store = self.openStore(url)
        spin(store.saveKeyring(Keyring.generate(1000.0)))
        planted = Keyring.generate(2000.0)
        self.server.cli("DEL", f"{prefix}keyring")
        self.server.cli("HSET", f"{prefix}keyring", *keyFields(planted))
        with self.assertRaises(WrongKeyEncryptionKey):
            spin(store.loadKeyring())

    def test_noKey(self) -> None:
        """
        A store given no key-encryption key keeps revocations, and refuses
        the keyring and mock secret with a clear error.
        """
        store = self.openStore(keyEncryptionKey=None)
        spin(store.revoke([Revocation("k1", 200.0, 100.0)]))
        self.assertTrue(spin(store.isRevoked("k1")))
        for call in (store.loadKeyring, store.mockSecret):
            with self.assertRaises(NoKeyEncryptionKey) as caught:
                spin(call())
            self.assertIn("keyEncryptionKey", str(caught.exception))

    def test_keyFile(self) -> None:
        """
        The key-encryption key may be given as the path of its file.
        """
        path = Path(self.mktemp())
        path.write_bytes(KEK.toFileContent())
        url, _ = self.prefixed()
        keyring = Keyring.generate(1000.0)
        spin(self.openStore(url).saveKeyring(keyring))
        self.assertEqual(
            spin(self.openStore(url, keyEncryptionKey=str(path)).loadKeyring()),
            keyring,
        )

    def test_rewrap(self) -> None:
        """
        Rewrapped under a new key, the secrets open under it (same keyring,
        same version, same mock secret); a store still holding the old key
        can neither read them nor save a keyring over them.
        """
        url, _ = self.prefixed()
        stale = self.openStore(url)
        keyring = Keyring.generate(1000.0)
        spin(stale.saveKeyring(keyring))
        mock = spin(stale.mockSecret())
        version = spin(stale.keyringVersion())
        new = KeyEncryptionKey.generate()
        rewrapping = self.openStore(url)
        spin(rewrapping.rewrapSecrets(new))
        self.assertEqual(rewrapping.keyEncryptionKey, new)
        fresh = self.openStore(url, keyEncryptionKey=new)
        self.assertEqual(spin(fresh.loadKeyring()), keyring)
        self.assertEqual(spin(fresh.mockSecret()), mock)
        self.assertEqual(spin(fresh.keyringVersion()), version)
        with self.assertRaises(WrongKeyEncryptionKey):
            spin(stale.loadKeyring())
        with self.assertRaises(WrongKeyEncryptionKey):
            spin(stale.saveKeyring(Keyring.generate(2000.0)))
        self.assertEqual(spin(fresh.loadKeyring()), keyring)

    def test_startupCheckWraps(self) -> None:
        """
        The bouncer's blocking start-up check wraps a clear store and says
        so; a second check finds nothing to wrap; another key is refused.
        """
        url, prefix = self.prefixed()
        keyring = Keyring.generate(1000.0)
        self.server.cli("HSET", f"{prefix}keyring", *keyFields(keyring))
        first = startupCheck(parseRedisURL(url), None, KEK)
        self.assertTrue(first.wrapped)
        second = startupCheck(parseRedisURL(url), None, KEK)
        self.assertFalse(second.wrapped)
        self.assertEqual(first.mockSecret, second.mockSecret)
        self.assertEqual(spin(self.openStore(url).loadKeyring()), keyring)
        with self.assertRaises(WrongKeyEncryptionKey):
            startupCheck(parseRedisURL(url), None, KeyEncryptionKey.generate())
