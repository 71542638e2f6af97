"""
Tests for what a Redis store adds to the store contracts, against a real
C{redis-server}: keys that expire by themselves, a key prefix per
deployment, changes pushed to subscribers, C{WAIT} for replicas, TLS with
the server's certificate checked, a password, and the startup check of a
bouncer (mock secret, durability warnings).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, cast

from cryptography.hazmat.primitives import serialization
from twisted.application.service import MultiService
from twisted.internet.defer import gatherResults
from twisted.internet.task import Clock

from twisted_keycard import Bouncer, KeycardRefused
from twisted_keycard.passwords import PasswordKeycard
from twisted_keycard.service import DataDir, Options, makeService
from twisted_keycard.store import KEYRING, REVOKED, SEAT, Revocation, ThrottleEvent
from twisted_keycard.store.redis import (
    RedisStore,
    ReplicasBehind,
    StoreUnavailable,
    parseRedisURL,
)
from twisted_keycard.store.redis._blocking import RedisReplyError, startupCheck
from twisted_keycard.tokens._tokens import Keyring

from ._redis import RedisServer, reactor, spin
from ._tls import makeCertificate
from .storecontract import record
from .test_redis_store import KEK, RedisTestCase, pytestmark  # noqa: F401

#: Keys that live as long as the deployment: the keyring, its version, the
#: mock secret, the key check, and the stream of revocations (trimmed as they expire).
PERMANENT = {"keyring", "keyring:version", "mock", "kek", "rev:log"}


class RedisKeysTests(RedisTestCase):
    def test_everythingExpires(self) -> None:
        """
        Every key but the deployment's own expires by itself; a revocation
        when the keycard would have expired (and a grace for clocks).
        """
        url = self.url()
        prefix = parseRedisURL(url).prefix
        clock = Clock()
        clock.advance(1000.0)
        store = self.openStore(url, clock=clock)
        spin(store.saveKeyring(Keyring.generate(1000.0)))
        spin(store.mockSecret())
        spin(store.renewLease("b1", 1000.0, 1010.0))
        # Records that end after the store's clock (an hour, a minute):
        # their keys' TTLs are far from 0 however long the checks below
        # take (one ended before the clock, with a TTL of a second, once
        # expired between the scan and its TTL on a loaded machine).
        spin(
            store.add(
                record(
                    "k1",
                    holderId="b1",
                    parentId="p",
                    familyId="f",
                    issued=1000.0,
                    expires=4600.0,
                )
            )
        )
        k2 = record("k2", seatPool="pool", issued=1000.0, expires=1060.0)
        spin(store.addWithin(k2, 5, 5))
        spin(store.revoke([Revocation("k1", 4600.0, 1000.0, "test")]))
        spin(store.shareThrottle("b1", [ThrottleEvent("account:alice", 1000.0)], 0, 0))
        keys = self.server.cli("--scan", "--pattern", f"{prefix}*").split()
        self.assertGreater(len(keys), 15)
        for key in keys:
            expiry = int(self.server.cli("TTL", key))
            if key.removeprefix(prefix) in PERMANENT:
                self.assertEqual(expiry, -1, key)
            else:
                self.assertGreater(expiry, 0, key)
        revoked = int(self.server.cli("TTL", f"{prefix}rev:k1"))
        self.assertTrue(3600 <= revoked <= 3660, revoked)

    def test_failuresExpireWithWindow(self) -> None:
        """
        Failed logins for 1,000 sprayed names, on the service's store with a
        60 s throttling window, leave one key for all of them (the log of
        throttle events), which expires with the window, not in a day; with
        C{--throttle-retention}, with that.
        """
        self.patch(sys, "excepthook", sys.excepthook)
        for extra, kept in [((), 60), (("--throttle-retention", "600"), 600)]:
            url = self.url()
            prefix = parseRedisURL(url).prefix
            data = DataDir.create(Path(self.mktemp()) / "data")
            options = Options()
            options.parseOptions(
                [
                    "--data-dir",
                    str(data.path),
                    "--store",
                    url,
                    "--throttle-window",
                    "60",
                    "--throttle-address",
                    "1000",
                    "--auth",
                    "memory:alice:secret",
                    *extra,
                ]
            )
            top = makeService(options)
            [bouncer] = [s for s in cast(MultiService, top) if isinstance(s, Bouncer)]
            bouncer.startService()
            spin(bouncer.started)
            refused = [
                bouncer.authenticate(
                    PasswordKeycard(
                        username=f"user{i}",
                        password="wrong",
                        address="192.0.2.7",
                        requesterName="keycard-bouncer",
                    )
                ).addErrback(lambda f: f.trap(KeycardRefused))
                for i in range(1000)
            ]
            spin(gatherResults(refused))
            # Replies come in order: the flush the start began is done too.
            spin(bouncer.flush())
            spin(bouncer.stopService())
            spin(cast(RedisStore, bouncer.store).close())
            keys = self.server.cli("--scan", "--pattern", f"{prefix}*").split()
            names = {key.removeprefix(prefix) for key in keys}
            # However many names: the log, the leases, the keyring and the
            # check of its key-encryption key.
            self.assertEqual(
                names, {"throttle:log", "leases", "keyring", "keyring:version", "kek"}
            )
            entries = int(self.server.cli("XLEN", f"{prefix}throttle:log"))
            self.assertGreater(entries, 0)
            expiry = int(self.server.cli("TTL", f"{prefix}throttle:log"))
            self.assertTrue(kept - 5 <= expiry <= kept + 1, (kept, expiry))

    def test_prefixes(self) -> None:
        """
        Stores with different prefixes on one Redis share nothing.
        """
        one, two = self.openStore(), self.openStore()
        spin(one.add(record("k1")))
        spin(one.revoke([Revocation("k1", 200.0, 100.0)]))
        self.assertIsNone(spin(two.get("k1")))
        self.assertFalse(spin(two.isRevoked("k1")))
        self.assertEqual(spin(two.revokedSince(0, 10)), ([], 0))
        self.assertNotEqual(spin(one.mockSecret()), spin(two.mockSecret()))

    def test_pushedChanges(self) -> None:
        """
        A subscriber hears of the revocations and keyring saves made
        through any store on the same Redis and prefix, and not after it
        cancels its subscription.
        """
        url = self.url()
        one, two = self.openStore(url), self.openStore(url)
        heard: list[str] = []
        cancel = one.subscribe(heard.append)
        spin(_until(lambda: one.listening))
        spin(two.revoke([Revocation("k1", 200.0, 100.0)]))
        spin(_until(lambda: REVOKED in heard))
        spin(two.saveKeyring(Keyring.generate(100.0)))
        spin(_until(lambda: KEYRING in heard))
        cancel()
        heard.clear()
        spin(two.revoke([Revocation("k2", 200.0, 100.0)]))
        spin(one.isRevoked("k2"))
        self.assertEqual(heard, [])

    def test_seatsFreedPushed(self) -> None:
        """
        A subscriber hears of each seat freed (a keycard holding one
        removed, released, or released with its lapsed lease), and of
        nothing for a keycard that holds no seat.
        """
        url = self.url()
        one, two = self.openStore(url), self.openStore(url)
        heard: list[str] = []
        one.subscribe(heard.append)
        spin(_until(lambda: one.listening))
        spin(two.addWithin(record("k1", seatPool="p"), None, 5))
        spin(two.addWithin(record("k2", seatPool="p"), None, 5))
        spin(two.add(record("n1")))
        spin(two.remove("n1"))
        spin(two.release("n1"))
        spin(one.get("k1"))
        self.assertEqual(heard, [])
        spin(two.remove("k1"))
        spin(_until(lambda: SEAT in heard))
        heard.clear()
        spin(two.release("k2"))
        spin(_until(lambda: SEAT in heard))
        heard.clear()
        spin(two.renewLease("dead", 100.0, 110.0))
        spin(two.addWithin(record("k3", seatPool="p", holderId="dead"), None, 5))
        spin(two.releaseLapsed(110.0))
        spin(_until(lambda: SEAT in heard))
        self.assertEqual(set(heard), {SEAT})

    def test_checksTogether(self) -> None:
        """
        Revocation checks made together are answered together, each right.
        """
        store = self.openStore()
        revoked = [f"r{i}" for i in range(600)]
        spin(store.revoke([Revocation(k, 200.0, 100.0) for k in revoked]))
        asked = []
        for i, keycardId in enumerate(revoked):
            asked += [keycardId, f"n{i}"]
        answers = spin(gatherResults([store.isRevoked(k) for k in asked]))
        self.assertEqual(answers, [k.startswith("r") for k in asked])

    def test_waitForReplicas(self) -> None:
        """
        A revocation that no replica confirmed in time fails, though the
        primary keeps it.
        """
        url = self.url() + "&replicas=1&replica-timeout=0.05"
        store = self.openStore(url)
        with self.assertRaises(ReplicasBehind) as behind:
            spin(store.revoke([Revocation("k1", 200.0, 100.0)]))
        self.assertEqual((behind.exception.confirmed, behind.exception.wanted), (0, 1))
        self.assertIn("applied, replicated to 0 of 1", str(behind.exception))
        self.assertTrue(spin(store.isRevoked("k1")))

    def test_startupCheck(self) -> None:
        """
        A starting bouncer reads the store's mock secret (the one every
        bouncer on the store uses) and is warned that this Redis loses
        revocations when it restarts.
        """
        url = self.url()
        found = startupCheck(parseRedisURL(url), None, KEK)
        self.assertEqual(spin(self.openStore(url).mockSecret()), found.mockSecret)
        self.assertEqual(len(found.warnings), 1)
        self.assertIn("appendonly no", found.warnings[0])
        self.assertTrue(found.openWithoutPassword)
        self.assertFalse(found.wrapped)


class RedisSecuredTests(RedisTestCase):
    """
    A Redis with a password and TLS, and no CONFIG command.
    """

    password = "correct horse"
    ca: Path

    @classmethod
    def setUpClass(cls) -> None:
        directory = Path(RedisTestCase().mktemp()).resolve()
        directory.mkdir(parents=True)
        certificate, key = makeCertificate("127.0.0.1")
        cls.ca = directory / "ca.pem"
        cls.ca.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        keyFile = directory / "key.pem"
        keyFile.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        cls.server = RedisServer(
            directory / "redis",
            "--requirepass",
            cls.password,
            "--rename-command",
            "CONFIG",
            "",
            tls=(cls.ca, keyFile),
        )
        cls.server.start()

    def secured(self) -> str:
        return f"{self.url()}&ca={self.ca}"

    def test_tlsAndPassword(self) -> None:
        store = self.openStore(self.secured(), password=self.password)
        spin(store.revoke([Revocation("k1", 200.0, 100.0)]))
        self.assertTrue(spin(store.isRevoked("k1")))
        self.assertEqual(len(spin(store.checkSettings())), 1)

    def test_untrustedCertificate(self) -> None:
        other, _ = makeCertificate("127.0.0.1")
        untrusted = Path(self.mktemp())
        untrusted.write_bytes(other.public_bytes(serialization.Encoding.PEM))
        url = f"{self.url()}&ca={untrusted}"
        with self.assertRaises(StoreUnavailable):
            spin(RedisStore.open(url, reactor, password=self.password, timeout=1.0))
        with self.assertRaises(OSError):
            startupCheck(parseRedisURL(url), self.password, KEK)

    def test_wrongPassword(self) -> None:
        with self.assertRaises(StoreUnavailable):
            spin(RedisStore.open(self.secured(), reactor, password="no", timeout=1.0))
        with self.assertRaises(RedisReplyError):
            startupCheck(parseRedisURL(self.secured()), "no", KEK)

    def test_startupCheckWithoutConfig(self) -> None:
        """
        Where CONFIG is disabled (managed services), the check says it could
        not check.
        """
        found = startupCheck(parseRedisURL(self.secured()), self.password, KEK)
        self.assertEqual(len(found.warnings), 1)
        self.assertIn("could not check", found.warnings[0])
        self.assertFalse(found.openWithoutPassword)


def _until(condition: Any) -> Any:
    from twisted.internet.defer import ensureDeferred

    from ._procs import waitFor

    return ensureDeferred(waitFor(condition, "a notice", timeout=10))
