"""
Attack suite, issue 23 finding 1: the Redis store's secrets.  A real
C{redis-server} and a real C{twistd -n keycard-bouncer} on it; an attacker
who reads every key of Redis (as C{redis-cli} on a Redis without a
password did) tries to sign tokens for an avatar that is no user with
everything it read, through the project's own L{sign}, and logs in with
them.  Before: the keyring sat in clear, and a token forged for
C{root-admin} was accepted.  Now it is wrapped under the data directory's
key-encryption key: nothing read from Redis signs a token the bouncer
takes, while the same forgery with the key that only the data directory
holds is accepted (the harness can forge).  Also: the start refused on a
Redis without a password, the override, a store written in clear before
wrapping wrapped at its first start, and C{keycard keys rewrap} end to end.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import secrets
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint

from twisted_keycard import KeycardClientFactory, KeycardDenied, KeycardRefused
from twisted_keycard.store.redis import KeyEncryptionKey
from twisted_keycard.store.redis._wrap import SecretsSnapshot, SecretsWrapper
from twisted_keycard.tokens import Keyring, SigningKey, TokenAnswerer, TokenClaims, sign

from ._attack import PASSWORD, AttackCase
from ._procs import ENV, ROOT, TIMEOUT, TWISTD, bouncer, freePort, keycard, reactor
from ._procs import started as _started
from ._redis import RedisServer

pytestmark = pytest.mark.integration

#: The avatar of the finding's forged token: no user of the bouncer.
TARGET = "root-admin"

#: The bouncer service's defaults, written in its tokens.
BOUNCER_NAME = "bouncer"
REQUESTER_NAME = "keycard-bouncer"

PREFIX = "keycard:"

REDIS_PASSWORD = "redis password of the test"


def forge(kid: str, secret: bytes, avatarId: str = TARGET) -> str:
    """
    A token for C{avatarId} signed with C{secret} as key C{kid}, as the
    bouncer service signs its own (the finding's forgery).
    """
    now = time.time()
    claims = TokenClaims(
        keycardId=secrets.token_urlsafe(16),
        avatarId=avatarId,
        issued=now,
        expires=now + 3600,
        bouncerName=BOUNCER_NAME,
        requesterName=REQUESTER_NAME,
        kid=kid,
    )
    return sign(claims, SigningKey(kid, secret, now - 60))


def candidates(value: str) -> set[bytes]:
    """
    Every secret an attacker could take from one value read in Redis: the
    value, each part of it between colons, any text inside it as JSON, each
    as bytes and decoded from base64.
    """
    texts = {value, *value.split(":")}
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        texts |= {str(v) for v in parsed.values()}
    found = set()
    for text in texts:
        if not text:
            continue
        found.add(text.encode("utf-8"))
        with contextlib.suppress(binascii.Error, ValueError):
            found.add(base64.b64decode(text, validate=True))
    found.discard(b"")
    return found


class RedisSecretsAttack(AttackCase):
    """
    A data directory on a Redis store (made with C{keycard init --store}),
    user alice, and a bouncer to start on it.
    """

    #: Redis's password, or C{None} for a Redis that takes commands from
    #: anyone (the finding's).
    redisPassword: str | None = None

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        options = []
        if self.redisPassword is not None:
            options = ["--requirepass", self.redisPassword]
        self.redis = RedisServer(self.dir / "redis", *options)
        self.redis.start()
        self.addCleanup(self.redis.stop)
        self.passwordFile = self.dir / "redis.password"
        self.data = self.initData(self.dir / "data")
        result = keycard(
            "user", "add", "--data-dir", str(self.data), "alice", stdin=PASSWORD + "\n"
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.legitimate = 200
        self.loginTook = float("inf")
        self.loginError: Exception | None = None
        self.tls = False

    def initData(self, path: Path, *options: str) -> Path:
        args = ["init", str(path), "--store", self.redis.url, *options]
        if self.redisPassword is not None:
            self.passwordFile.write_text(self.redisPassword + "\n")
            self.passwordFile.chmod(0o600)
            args += ["--store-password-file", str(self.passwordFile)]
        result = keycard(*args)
        self.assertEqual(result.returncode, 0, result.stderr)
        return path

    def cli(self, *args: str) -> str:
        """
        C{redis-cli}, as the attacker runs it.
        """
        if self.redisPassword is not None:
            args = ("--no-auth-warning", "-a", self.redisPassword, *args)
        return self.redis.cli(*args)

    def dump(self) -> dict[str, list[str]]:
        """
        Every key of Redis and every value and field name in it, read as
        C{redis-cli} reads them.
        """
        found: dict[str, list[str]] = {}
        for key in self.cli("--scan").split("\n"):
            if not key:
                continue
            kind = self.cli("TYPE", key)
            command = {
                "string": ["GET", key],
                "hash": ["HGETALL", key],
                "zset": ["ZRANGE", key, "0", "-1", "WITHSCORES"],
                "set": ["SMEMBERS", key],
                "list": ["LRANGE", key, "0", "-1"],
                "stream": ["XRANGE", key, "-", "+"],
            }[kind]
            found[key] = self.cli(*command).split("\n")
        return found

    async def tokenLogin(self, token: str) -> str | None:
        """
        Log in with C{token} over PB.

        @return: the avatar id the bouncer gave, or C{None} when refused.
        """
        factory = KeycardClientFactory()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, timeout=TIMEOUT)
        await endpoint.connect(factory)
        try:
            login = await factory.loginWithKeycard([TokenAnswerer(token)])
        except (KeycardRefused, KeycardDenied):
            return None
        finally:
            factory.disconnect()
        avatarId: str | None = login.keycard.avatarId
        return avatarId

    async def aliceToken(self) -> str:
        factory = KeycardClientFactory()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, timeout=TIMEOUT)
        await endpoint.connect(factory)
        try:
            from twisted_keycard.scram import SCRAMAnswerer

            login = await factory.loginWithKeycard([SCRAMAnswerer("alice", PASSWORD)])
        finally:
            factory.disconnect()
        token = login.keycard.token
        assert token is not None
        return token

    def twistd(self, data: Path, *options: str) -> subprocess.CompletedProcess[str]:
        """
        Run a bouncer expected to stop on its own.
        """
        return subprocess.run(
            [
                TWISTD,
                "-n",
                "--pidfile=",
                "keycard-bouncer",
                "--data-dir",
                str(data),
                "--listen",
                f"tcp:{freePort()}:interface=127.0.0.1",
                *options,
            ],
            capture_output=True,
            text=True,
            env=ENV,
            cwd=ROOT,
            timeout=TIMEOUT,
            check=False,
        )

    def assertOneLine(self, result: subprocess.CompletedProcess[str]) -> str:
        """
        The bouncer stopped with one line on its standard error (its log,
        on standard output with C{-n}, has the same line) and no
        traceback anywhere.

        @return: the line.
        """
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 1, output)
        self.assertNotIn("Traceback", output)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertTrue(lines[0].startswith("keycard-bouncer: "), lines[0])
        return lines[0]

    def storedKeyring(self, data: Path) -> Keyring:
        """
        The keyring, opened with the data directory's key-encryption key:
        what only a holder of the data directory can do.
        """
        kek = KeyEncryptionKey.fromFile(data / "store.kek")
        reply: list[Any] = [
            self.cli("GET", f"{PREFIX}keyring:version") or "0",
            self.cli("GET", f"{PREFIX}kek") or None,
            self.cli("GET", f"{PREFIX}mock") or None,
            *self.cli("HGETALL", f"{PREFIX}keyring").split("\n"),
        ]
        snapshot = SecretsSnapshot.fromReply(reply)
        keyring = SecretsWrapper(kek, PREFIX).unwrapKeyring(
            snapshot.keyring, snapshot.version
        )
        assert keyring is not None
        return keyring


class ReadableRedisTests(RedisSecretsAttack):
    def test_noForgeryFromRedis(self) -> Deferred[None]:
        """
        On a Redis without a password (the finding's, started with the
        override), after a real login: every value read from Redis, tried
        as the signing key of every key id it holds, signs no token the
        bouncer takes for C{root-admin}; none holds the signing key's
        bytes.  The same forgery with the key opened by the data
        directory's key-encryption key is taken: the forgery works, only
        its key is out of reach.
        """

        async def go() -> None:
            await self.startBouncer("--insecure-redis", "--no-throttle")
            self.assertIn("--insecure-redis", self.serverLog())
            token = await self.aliceToken()
            self.assertEqual(await self.tokenLogin(token), "alice")
            dumped = self.dump()
            self.assertIn(f"{PREFIX}keyring", dumped)
            self.assertIn(f"{PREFIX}mock", dumped)
            hashed = dumped[f"{PREFIX}keyring"]
            kids = set(hashed[::2])
            values = [v for lines in dumped.values() for v in lines]
            secretsRead = set().union(*map(candidates, values))
            real = self.storedKeyring(self.data)
            for key in real.keys:
                self.assertEqual(kids, {key.kid})
                for shown in (key.secret.hex(), base64.b64encode(key.secret).decode()):
                    self.assertFalse(any(shown in v for v in values))
                self.assertNotIn(key.secret, secretsRead)
            accepted = []
            tried = 0
            for kid in sorted(kids):
                for secret in sorted(secretsRead):
                    tried += 1
                    avatar = await self.tokenLogin(forge(kid, secret))
                    if avatar is not None:
                        accepted.append((kid, secret))
            await self.loginDuringAttack()
            self.assertGreater(tried, 20)
            self.assertEqual(accepted, [])
            # The harness's forgery, with the key Redis does not give.
            signing = real.signing
            self.assertEqual(
                await self.tokenLogin(forge(signing.kid, signing.secret)), TARGET
            )
            self.report(
                "redis-secrets",
                keysRead=len(dumped),
                forgeriesTried=tried,
                forgeriesAccepted=len(accepted),
                forgeryWithDataDirKeyAccepted=1,
            )
            self.assertHealthy()

        return ensureDeferred(go())

    def test_passwordlessRefused(self) -> None:
        """
        Without the override, a Redis that takes commands without a
        password stops the start with one line naming the password file
        option and the override.
        """
        output = self.assertOneLine(self.twistd(self.data))
        self.assertIn("takes commands without a password", output)
        self.assertIn("--store-password-file", output)
        self.assertIn("--insecure-redis", output)


class ProtectedRedisTests(RedisSecretsAttack):
    redisPassword = REDIS_PASSWORD

    def test_wrapsClearStoreAtStart(self) -> Deferred[None]:
        """
        A store written before wrapping (the keyring's JSON and the mock
        secret in clear) is wrapped by the first bouncer that starts on it
        with the key-encryption key, which says so in its log; tokens that
        key signed before are still taken.
        """
        old = Keyring.generate(time.time() - 60)
        key = old.signing
        self.cli("FLUSHALL")
        field = json.dumps(
            {
                "secret": base64.b64encode(key.secret).decode(),
                "created": key.created,
                "notAfter": None,
            }
        )
        self.cli("HSET", f"{PREFIX}keyring", key.kid, field)
        self.cli("SET", f"{PREFIX}keyring:version", "7")
        mock = base64.b64encode(os.urandom(32)).decode()
        self.cli("SET", f"{PREFIX}mock", mock)

        async def go() -> None:
            await self.startBouncer()
            self.assertIn("wrapped the keyring and mock secret", self.serverLog())
            stored = self.cli("HGET", f"{PREFIX}keyring", key.kid)
            self.assertTrue(stored.startswith("kw1:"), stored)
            self.assertNotIn(base64.b64encode(key.secret).decode(), stored)
            self.assertTrue(self.cli("GET", f"{PREFIX}mock").startswith("kw1:"))
            self.assertEqual(self.cli("GET", f"{PREFIX}keyring:version"), "7")
            self.assertEqual(self.storedKeyring(self.data), old)
            token = forge(key.kid, key.secret, "alice")
            self.assertEqual(await self.tokenLogin(token), "alice")

        return ensureDeferred(go())

    def test_wrongKeyRefused(self) -> None:
        """
        A data directory whose key-encryption key is not the store's stops
        the start with one line, never a traceback.
        """
        (self.data / "store.kek").write_bytes(
            KeyEncryptionKey.generate().toFileContent()
        )
        output = self.assertOneLine(self.twistd(self.data))
        self.assertIn("cannot read the secrets of the store", output)
        self.assertIn("store.kek must be the one of the store's other hosts", output)

    def test_rewrap(self) -> Deferred[None]:
        """
        C{keycard keys rewrap}: a new key-encryption key, written 0600 in
        place of the old; a bouncer restarted with it takes a token issued
        before; a host still holding the old key cannot start until it
        gets the new file, then takes the token too.  A data directory
        made for a second host needs the store's key (C{--store-key-file}).
        """
        other = self.dir / "other"
        made = keycard(
            "init",
            str(other),
            "--store",
            self.redis.url,
            "--store-password-file",
            str(self.passwordFile),
        )
        self.assertEqual(made.returncode, 2, made.stdout)
        self.assertIn("--store-key-file", made.stderr)
        self.initData(other, "--store-key-file", str(self.data / "store.kek"))
        shutil.copy(self.data / "users.scram", other / "users.scram")
        oldKey = (self.data / "store.kek").read_bytes()
        self.assertEqual((other / "store.kek").read_bytes(), oldKey)
        before = self.storedKeyring(self.data)

        async def go() -> None:
            await self.startBouncer()
            token = await self.aliceToken()
            self.server.stop()
            rewrapped = keycard("keys", "rewrap", "--data-dir", str(self.data))
            self.assertEqual(rewrapped.returncode, 0, rewrapped.stderr)
            path = self.data / "store.kek"
            newKey = path.read_bytes()
            self.assertNotEqual(newKey, oldKey)
            self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
            self.assertFalse((self.data / "store.kek.new").exists())
            kek = KeyEncryptionKey.fromFile(path)
            self.assertIn(f"new key-encryption key {kek.id}", rewrapped.stdout)
            self.assertEqual(self.storedKeyring(self.data), before)
            # The other host, with the old key: one line.
            output = self.assertOneLine(self.twistd(other))
            self.assertIn("key-encryption key", output)
            # This host, restarted with the new key, takes the old token.
            await self.startBouncer()
            self.assertEqual(await self.tokenLogin(token), "alice")
            # The other host once it has the new file.
            (other / "store.kek").write_bytes(newKey)
            port = freePort()
            process = bouncer(
                other, f"tcp:{port}:interface=127.0.0.1", self.dir / "other.log"
            )
            self.addCleanup(process.stop)
            await _started(process, port)
            self.port = port
            self.assertEqual(await self.tokenLogin(token), "alice")

        return ensureDeferred(go())
