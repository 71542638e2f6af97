"""
Integration tests of the bouncer service: C{twistd -n keycard-bouncer} as a
real process on a free loopback port, driven by the C{keycard} command as in
the README, with real TLS.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_keycard.bouncer._settings import TokenPolicy
from twisted_keycard.pb._broker import ConnectionLimits, MessageBudget
from twisted_keycard.service import DataDir, Options
from twisted_keycard.web import SiteLimits

from ._procs import ENV, ROOT, TWISTD, bouncer, freePort, keycard, started

PASSWORD = "correct horse battery staple"

#: Seconds a running bouncer may take to follow a revocation written by the
#: keycard command: its follow interval (one second), with room to spare.
FOLLOW = 5.0


def refusedSoon(*args: str) -> subprocess.CompletedProcess[str]:
    """
    Run C{keycard login ARGS} until it is refused, as it is once the bouncer
    has read the revocation (within its follow interval), for at most
    L{FOLLOW} seconds; the last run.
    """
    deadline = time.monotonic() + FOLLOW
    while True:
        result = keycard("login", *args)
        if result.returncode != 0 or time.monotonic() > deadline:
            return result


@pytest.mark.integration
class ServiceTests(TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        self.data = self.dir / "data"
        result = keycard("init", str(self.data), "--dev-cert", "localhost")
        self.assertEqual(result.returncode, 0, result.stderr)
        result = keycard(
            "user", "add", "--data-dir", str(self.data), "alice", stdin=PASSWORD + "\n"
        )
        self.assertEqual(result.returncode, 0, result.stderr)

    def startBouncer(self, listen: str, port: int, *options: str) -> Deferred[None]:
        process = bouncer(self.data, listen, self.dir / f"bouncer-{port}.log", *options)
        self.addCleanup(process.stop)
        return ensureDeferred(started(process, port))

    def test_walkthrough(self) -> Deferred[None]:
        """
        The README's walk-through: log in, list, log in with the token,
        revoke, and the token is refused.
        """

        async def go() -> None:
            port = freePort()
            await self.startBouncer(f"tcp:{port}:interface=127.0.0.1", port)
            connect = f"tcp:127.0.0.1:{port}"
            token = self.dir / "alice.token"
            login = keycard(
                "login",
                "--connect",
                connect,
                "alice",
                "--save-token",
                str(token),
                stdin=PASSWORD + "\n",
            )
            self.assertEqual(login.returncode, 0, login.stderr)
            self.assertIn("avatar id:  alice", login.stdout)
            self.assertEqual(token.stat().st_mode & 0o777, 0o600)
            keycardId = login.stdout.split("keycard id: ")[1].split()[0]
            listing = keycard("list", "--data-dir", str(self.data))
            self.assertIn(keycardId, listing.stdout)
            again = keycard("login", "--connect", connect, "--token-file", str(token))
            self.assertEqual(again.returncode, 0, again.stderr)
            revoke = keycard("revoke", "--data-dir", str(self.data), keycardId)
            self.assertEqual(revoke.returncode, 0, revoke.stderr)
            refused = refusedSoon("--connect", connect, "--token-file", str(token))
            self.assertEqual(refused.returncode, 1)
            self.assertEqual(refused.stdout.strip(), "keycard: login refused")
            wrong = keycard("login", "--connect", connect, "alice", stdin="wrong\n")
            self.assertEqual(wrong.returncode, 1)
            self.assertNotIn("Traceback", wrong.stdout + wrong.stderr)

        return ensureDeferred(go())

    def test_revokeAvatar(self) -> Deferred[None]:
        async def go() -> None:
            port = freePort()
            await self.startBouncer(f"tcp:{port}:interface=127.0.0.1", port)
            connect = f"tcp:127.0.0.1:{port}"
            token = self.dir / "alice.token"
            keycard(
                "login",
                "--connect",
                connect,
                "alice",
                "--save-token",
                str(token),
                stdin=PASSWORD + "\n",
            )
            keycard("revoke", "--data-dir", str(self.data), "--avatar", "alice")
            refused = refusedSoon("--connect", connect, "--token-file", str(token))
            self.assertEqual(refused.returncode, 1)
            fresh = keycard(
                "login", "--connect", connect, "alice", stdin=PASSWORD + "\n"
            )
            self.assertEqual(fresh.returncode, 0, fresh.stderr)

        return ensureDeferred(go())

    def test_tls(self) -> Deferred[None]:
        """
        Over TLS the client checks the server: the right host name logs in,
        a wrong one or a missing trust root is refused with one line.
        """

        async def go() -> None:
            port = freePort()
            pem = self.data / "tls" / "server.pem"
            await self.startBouncer(
                f"ssl:{port}:interface=127.0.0.1:privateKey={pem}", port
            )
            trust = self.data / "tls" / "trust"
            good = keycard(
                "login",
                "--connect",
                f"tls:localhost:{port}:trustRoots={trust}",
                "alice",
                stdin=PASSWORD + "\n",
            )
            self.assertEqual(good.returncode, 0, good.stderr)
            for endpoint in [
                f"tls:127.0.0.1:{port}:trustRoots={trust}",
                f"tls:localhost:{port}",
            ]:
                bad = keycard(
                    "login", "--connect", endpoint, "alice", stdin=PASSWORD + "\n"
                )
                self.assertEqual(bad.returncode, 2, bad.stdout)
                self.assertIn("TLS failed", bad.stderr)
                self.assertEqual(len(bad.stderr.strip().splitlines()), 1, bad.stderr)

        return ensureDeferred(go())

    def test_noDataDir(self) -> None:
        result = subprocess.run(
            [TWISTD, "-n", "keycard-bouncer", "--data-dir", str(self.dir / "missing")],
            capture_output=True,
            text=True,
            env=ENV,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("keycard init", result.stdout + result.stderr)

    def test_cliErrors(self) -> None:
        missing = keycard("list", "--data-dir", str(self.dir / "missing"))
        self.assertEqual(missing.returncode, 2)
        self.assertIn("keycard init", missing.stderr)
        nothing = keycard("user", "add", "--data-dir", str(self.data), "bob", stdin="")
        self.assertEqual(nothing.returncode, 2)
        self.assertIn("no password", nothing.stderr)
        refused = keycard(
            "login", "--connect", f"tcp:127.0.0.1:{freePort()}", "alice", stdin="x\n"
        )
        self.assertEqual(refused.returncode, 2)
        self.assertIn("cannot connect", refused.stderr)


#: The audience group of the service's own faces, by default.
FACES = [{"keycard-bouncer", "keycard-bouncer/http", "keycard-bouncer/tickets"}]


class OptionsTests(SynchronousTestCase):
    """
    The token options of C{twistd keycard-bouncer}, parsed.
    """

    def parse(self, *arguments: str) -> Options:
        data = DataDir.create(Path(self.mktemp()) / "data")
        options = Options()
        options.parseOptions(["--data-dir", str(data.path), *arguments])
        return options

    def test_tokenDefaults(self) -> None:
        """
        By default tokens are issued, and the service's own faces (PB,
        HTTP, ticket granting) take each other's tokens.
        """
        self.assertEqual(self.parse().tokens, TokenPolicy(groups=FACES))
        self.assertIsNone(self.parse("--no-tokens").tokens)

    def test_tokenAudiencesAndLifetime(self) -> None:
        options = self.parse(
            "--token-audiences",
            "app1, app2,",
            "--max-family-lifetime",
            "600",
            "--bind-tokens",
        )
        self.assertEqual(
            options.tokens,
            TokenPolicy(
                bindAddress=True,
                audiences={"app1", "app2"},
                maxFamilyLifetime=600,
                groups=FACES,
            ),
        )

    def test_faceNamesFollowRequesterName(self) -> None:
        """
        The faces' audience names are the service's requester name, and
        that name with C{/http} and C{/tickets}.
        """
        options = self.parse("--requester-name", "b")
        assert options.tokens is not None
        self.assertEqual(options.tokens.groups, ({"b", "b/http", "b/tickets"},))

    def test_requesterNamedAsAFace(self) -> None:
        """
        A requester may not take the name of one of the service's faces:
        the tokens issued through it would be taken there.
        """
        for name in ("keycard-bouncer", "keycard-bouncer/tickets"):
            error = self.assertRaises(
                SystemExit, self.parse, "--requesters", f"app1,{name}"
            )
            self.assertEqual(
                str(error),
                f"keycard-bouncer: --requesters {name}: that is the name of one"
                " of this service's own faces; a requester under it would issue"
                " tokens taken there",
            )

    def test_familyLifetimePositive(self) -> None:
        error = self.assertRaises(SystemExit, self.parse, "--max-family-lifetime", "0")
        self.assertEqual(
            str(error),
            "keycard-bouncer: --max-family-lifetime must be a positive number",
        )


class PluginTests(TestCase):
    @pytest.mark.integration
    def test_twistdHelp(self) -> None:
        """
        twistd lists the plugin and its options.
        """
        result = subprocess.run(
            [TWISTD, "--help"],
            capture_output=True,
            text=True,
            env=ENV,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
        self.assertIn("keycard-bouncer", result.stdout)

    def test_pluginSystem(self) -> None:
        from twisted.application.service import IServiceMaker
        from twisted.cred.strcred import findCheckerFactories
        from twisted.plugin import getPlugins

        names = [p.tapname for p in getPlugins(IServiceMaker)]
        self.assertIn("keycard-bouncer", names)
        self.assertIn("scram", [f.authType for f in findCheckerFactories()])


class ConnectionOptionsTests(SynchronousTestCase):
    """
    The twistd options of the limits on connections (L{ConnectionLimits}).
    """

    def parse(self, *args: str) -> Options:
        data = DataDir.create(Path(self.mktemp()) / "data")
        options = Options()
        options.parseOptions(["--data-dir", str(data.path), *args])
        return options

    def test_defaults(self) -> None:
        """
        With no option, the library's defaults.
        """
        self.assertEqual(self.parse().limits, ConnectionLimits())

    def test_options(self) -> None:
        limits = self.parse(
            "--login-timeout=3",
            "--idle-timeout=600",
            "--max-unauthenticated=100",
            "--max-unauthenticated-per-address=4",
            "--login-messages=8",
            "--login-message-bytes=4096",
            "--login-message-objects=64",
            "--login-message-depth=8",
            "--max-message-bytes=65536",
            "--max-message-objects=2048",
            "--log-lines=3",
        ).limits
        self.assertEqual(
            limits,
            ConnectionLimits(
                loginTimeout=3.0,
                idleTimeout=600.0,
                maxUnauthenticated=100,
                maxUnauthenticatedPerAddress=4,
                loginMessages=8,
                loginBudget=MessageBudget(4096, 64, 8),
                budget=MessageBudget(65536, 2048, 512),
                logLines=3,
            ),
        )

    def test_noDeadline(self) -> None:
        self.assertIsNone(self.parse("--login-timeout=0").limits.loginTimeout)

    def test_httpDefaults(self) -> None:
        """
        The HTTP face's limits: the library's defaults, with the PB face's
        login deadline.
        """
        self.assertEqual(self.parse().siteLimits, SiteLimits())
        self.assertEqual(
            self.parse("--login-timeout=4").siteLimits,
            SiteLimits(loginTimeout=4.0),
        )

    def test_httpOptions(self) -> None:
        limits = self.parse(
            "--http-request-timeout=3", "--http-idle-timeout=0", "--login-timeout=0"
        ).siteLimits
        self.assertEqual(
            limits, SiteLimits(requestTimeout=3.0, idleTimeout=None, loginTimeout=None)
        )

    def test_httpRefused(self) -> None:
        for bad in ("--http-request-timeout=-1", "--http-idle-timeout=nan"):
            error = self.assertRaises(SystemExit, self.parse, bad)
            self.assertIn("must be a number of seconds (0: any)", str(error))
            self.assertNotIn("\n", str(error))

    def test_refused(self) -> None:
        for bad in ("--max-unauthenticated=0", "--login-message-objects=-1"):
            error = self.assertRaises(SystemExit, self.parse, bad)
            self.assertTrue(str(error).startswith("keycard-bouncer: "), str(error))
            self.assertNotIn("\n", str(error))
