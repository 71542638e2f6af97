"""
Tests for the Redis store in the bouncer service and the keycard command:
C{--store} and the data directory's store URL, the password from a file or
the environment (never the command line), and one-line failures when
Redis cannot be reached.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_keycard.service import DataDir, Options
from twisted_keycard.service._services import BouncerService
from twisted_keycard.service._startup import (
    PASSWORD_ENVIRONMENT,
    isLoopback,
    plainTCPWarning,
    storePassword,
)
from twisted_keycard.store.redis import RedisStore, parseRedisURL

from ._procs import (
    ENV,
    ROOT,
    TIMEOUT,
    TWISTD,
    bouncer,
    freePort,
    keycard,
    started,
)
from ._redis import RedisServer, reactor

PASSWORD = "correct horse battery staple"


class RedisOptionsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.data = DataDir.create(Path(self.mktemp()) / "data")

    def parse(self, *args: str) -> Options:
        options = Options()
        options.parseOptions(["--data-dir", str(self.data.path), *args])
        return options

    def refused(self, *args: str) -> str:
        with self.assertRaises(SystemExit) as caught:
            self.parse(*args)
        line = str(caught.exception.code)
        self.assertTrue(line.startswith("keycard-bouncer: "), line)
        return line

    def test_redisStore(self) -> None:
        options = self.parse("--store", "redis://127.0.0.1:6390/1?prefix=a:")
        assert options.redisURL is not None
        self.assertEqual(options.redisURL.db, 1)
        self.assertEqual(options.redisURL.prefix, "a:")
        self.assertIsNone(options.storePath)

    def test_sqliteStill(self) -> None:
        options = self.parse()
        self.assertEqual(options.storePath, str(self.data.database))
        self.assertIsNone(options.redisURL)

    def test_dataDirStore(self) -> None:
        """
        The store given to C{keycard init --store} is the default, with its
        password file.
        """
        path = Path(self.mktemp())
        path.write_text("from the file\n")
        path.chmod(0o600)
        data = DataDir.create(
            Path(self.mktemp()) / "data", "redis://10.0.0.1/3", str(path)
        )
        self.assertEqual(
            json.loads(data.marker.read_text()),
            {
                "format": 1,
                "store": "redis://10.0.0.1/3",
                "storePasswordFile": str(path.resolve()),
            },
        )
        options = Options()
        options.parseOptions(["--data-dir", str(data.path)])
        assert options.redisURL is not None
        self.assertEqual(options.redisURL.hosts, (("10.0.0.1", 6379),))
        self.assertEqual(options.storePassword, "from the file")

    def test_refused(self) -> None:
        for args, words in [
            (("--store", "redis://:pw@host/0"), "takes no user or password"),
            (("--store", "redis://host/0?x=1"), "unknown Redis URL option"),
            (("--store", "mongodb://host"), "unknown store"),
            (
                ("--store", "redis://host/0", "--store-password-file", "/no/such"),
                "cannot read the store's password file: no such file",
            ),
            (("--tokens-when-store-down", "maybe"), "refuse or accept"),
        ]:
            with self.subTest(args=args):
                self.assertIn(words, self.refused(*args))

    def test_passwordFromEnvironment(self) -> None:
        self.patch(os, "environ", {**os.environ, PASSWORD_ENVIRONMENT: "env pw"})
        self.assertEqual(storePassword(None), "env pw")
        options = self.parse("--store", "redis://host/0")
        self.assertEqual(options.storePassword, "env pw")

    def test_exposedPasswordFile(self) -> None:
        path = Path(self.mktemp())
        path.write_text("pw\n")
        path.chmod(0o644)
        line = self.refused(
            "--store", "redis://host/0", "--store-password-file", str(path)
        )
        self.assertIn("open to other users", line)

    def test_keyEncryptionKey(self) -> None:
        """
        A Redis store reads the data directory's key-encryption key; a
        SQLite store does not need one.
        """
        options = self.parse("--store", "redis://host/0")
        self.assertEqual(options.keyEncryptionKey, self.data.keyEncryptionKey())
        self.assertFalse(options["insecure-redis"])
        self.data.keyEncryptionKeyFile.unlink()
        self.assertIsNone(self.parse().keyEncryptionKey)
        line = self.refused("--store", "redis://host/0")
        self.assertIn(f"{self.data.keyEncryptionKeyFile} is missing", line)
        self.assertIn("keycard keys rewrap", line)
        self.data.keyEncryptionKeyFile.write_text("not a key\n")
        line = self.refused("--store", "redis://host/0")
        self.assertIn("holds no key-encryption key", line)

    def test_exposedKeyFile(self) -> None:
        self.data.keyEncryptionKeyFile.chmod(0o640)
        line = self.refused("--store", "redis://host/0")
        self.assertIn(f"file {self.data.keyEncryptionKeyFile} has mode 0640", line)
        self.assertIn("--insecure-permissions", line)

    def test_insecureRedis(self) -> None:
        options = self.parse("--store", "redis://host/0", "--insecure-redis")
        self.assertTrue(options["insecure-redis"])
        self.assertIn("--insecure-redis", str(options))

    def test_plainTCPWarning(self) -> None:
        """
        Plain TCP to a Redis on another host is warned about; loopback and
        TLS are not.
        """
        for url in (
            "redis://127.0.0.1/0",
            "redis://127.0.0.2:6380/0",
            "redis://localhost/0",
            "redis://[::1]/0",
            "rediss://10.0.0.1/0",
        ):
            with self.subTest(url=url):
                self.assertIsNone(plainTCPWarning(parseRedisURL(url)))
        warning = plainTCPWarning(parseRedisURL("redis://10.0.0.1:6390/0"))
        assert warning is not None
        self.assertIn("10.0.0.1:6390", warning)
        self.assertIn("rediss://", warning)
        self.assertTrue(isLoopback("::1"))
        self.assertFalse(isLoopback("redis.example"))


@pytest.mark.integration
class RedisStartupTests(TestCase):
    """
    The bouncer and the keycard command fail with one line when Redis
    cannot be reached or refuses them.
    """

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)

    def execute(self, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            env={**ENV, **env},
            cwd=ROOT,
            timeout=TIMEOUT * 2,
            check=False,
        )

    def assertOneLine(
        self, result: subprocess.CompletedProcess[str], start: str, words: str
    ) -> None:
        output = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0, output)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertTrue(lines[0].startswith(start), lines[0])
        self.assertIn(words, lines[0])
        self.assertNotIn("Traceback", output)

    def test_unreachable(self) -> None:
        nowhere = f"redis://127.0.0.1:{freePort()}/0"
        init = self.execute(
            [
                *keycardCommand(),
                "init",
                str(self.dir / "data"),
                "--store",
                nowhere,
            ]
        )
        self.assertOneLine(init, "keycard: ", "cannot reach the Redis store")
        self.assertFalse((self.dir / "data").exists())
        made = keycard("init", str(self.dir / "local"))
        self.assertEqual(made.returncode, 0, made.stderr)
        started = self.execute(
            [
                TWISTD,
                "-n",
                "--pidfile=",
                "keycard-bouncer",
                "--data-dir",
                str(self.dir / "local"),
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--store",
                nowhere,
            ]
        )
        self.assertOneLine(
            started, "keycard-bouncer: ", f"cannot open the store {nowhere}"
        )

    def test_wrongPassword(self) -> None:
        server = RedisServer(self.dir / "redis", "--requirepass", "right")
        server.start()
        self.addCleanup(server.stop)
        data = str(self.dir / "data")
        init = self.execute(
            [*keycardCommand(), "init", data, "--store", server.url],
            **{PASSWORD_ENVIRONMENT: "right"},
        )
        self.assertEqual(init.returncode, 0, init.stderr)
        self.assertIn("appendonly no", init.stderr)
        listed = self.execute(
            [*keycardCommand(), "list", "--data-dir", data],
            **{PASSWORD_ENVIRONMENT: "wrong"},
        )
        self.assertOneLine(listed, "keycard: ", "WRONGPASS")
        self.assertNotIn("wrong", listed.stderr)
        started = self.execute(
            [
                TWISTD,
                "-n",
                "--pidfile=",
                "keycard-bouncer",
                "--data-dir",
                data,
                "--listen",
                "tcp:0:interface=127.0.0.1",
            ],
            **{PASSWORD_ENVIRONMENT: "wrong"},
        )
        self.assertOneLine(started, "keycard-bouncer: ", "WRONGPASS")


@pytest.mark.integration
class EmbeddedRedisTests(TestCase):
    def test_fromDataDir(self) -> Deferred[None]:
        """
        An application embedding the bouncer of a data directory made on a
        Redis store runs it on that store, with its keyring.
        """
        directory = Path(self.mktemp()).resolve()
        server = RedisServer(directory / "redis")
        server.start()
        self.addCleanup(server.stop)
        data = directory / "data"
        made = keycard("init", str(data), "--store", server.url)
        self.assertEqual(made.returncode, 0, made.stderr)

        async def go() -> None:
            service = BouncerService.fromDataDir(data, reactor, name="embedded")
            self.assertIsInstance(service.store, RedisStore)
            service.startService()
            await service.bouncer.started
            keys = service.bouncer.keys
            assert keys is not None and keys.keyring is not None
            self.assertIn(keys.keyring.signing.kid, made.stdout)
            # The flush the bouncer started with is done once this one is:
            # commands are answered in order.
            await service.bouncer.flush()
            await service.stopService()
            self.assertTrue(service.store._connection.closed)

        return ensureDeferred(go())


def keycardCommand() -> list[str]:
    import sys

    return [sys.executable, "-m", "twisted_keycard.admin"]


@pytest.mark.integration
class RevokeOutcomeTests(TestCase):
    def test_appliedUnreplicatedOrNot(self) -> Deferred[None]:
        """
        C{keycard revoke} tells a revocation applied but confirmed by fewer
        Redis replicas than asked (status 3) from one not applied, Redis
        being unreachable (status 2), each in one line (issue 24: both were
        a failure, status 2).
        """
        directory = Path(self.mktemp()).resolve()
        server = RedisServer(directory / "redis")
        server.start()
        self.addCleanup(server.stop)
        data = directory / "data"
        url = server.url + "?replicas=1&replica-timeout=0.05"
        made = keycard("init", str(data), "--store", url)
        self.assertEqual(made.returncode, 0, made.stderr)
        added = keycard(
            "user", "add", "--data-dir", str(data), "alice", stdin=PASSWORD + "\n"
        )
        self.assertEqual(added.returncode, 0, added.stderr)

        async def go() -> None:
            port = freePort()
            process = bouncer(
                data,
                f"tcp:{port}:interface=127.0.0.1",
                directory / "bouncer.log",
                "--insecure-redis",
            )
            self.addCleanup(process.stop)
            await started(process, port)
            login = keycard(
                "login", "--connect", f"tcp:127.0.0.1:{port}", "alice",
                stdin=PASSWORD + "\n",
            )  # fmt: skip
            self.assertEqual(login.returncode, 0, login.stderr)
            revoke = ("revoke", "--data-dir", str(data), "--avatar", "alice")
            unreplicated = keycard(*revoke)
            self.assertEqual(unreplicated.returncode, 3, unreplicated.stderr)
            self.assertEqual(
                unreplicated.stderr,
                "keycard: revoked, but not safe from a failover: applied,"
                " replicated to 0 of 1 Redis replicas in 0.05s; check the"
                " replicas, and revoke again if one takes over\n",
            )
            server.stop()
            unreachable = keycard(*revoke)
            self.assertEqual(unreachable.returncode, 2, unreachable.stderr)
            self.assertEqual(unreachable.stderr.count("\n"), 1, unreachable.stderr)
            self.assertTrue(
                unreachable.stderr.startswith("keycard: cannot reach the Redis store"),
                unreachable.stderr,
            )
            self.assertTrue(
                unreachable.stderr.endswith(": nothing revoked\n"), unreachable.stderr
            )

        return ensureDeferred(go())
