"""
PostgreSQL parity of SCRAM-SHA-256 passwords (issue 26, item 3), against a
real PostgreSQL server: a password SASLprep refuses (a TAB, an emoji
unassigned in Unicode 3.2) is used as its raw UTF-8 bytes on both sides, as
PostgreSQL does, so a role's verifier moves either way.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import scramp
from passlib.utils import saslprep
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import TestCase

from twisted_keycard.scram import SCRAMAnswerer, Verifier

from ._postgres import postgres
from ._procs import bouncer, freePort, keycard, started
from .test_scram_interop import ourClientLogin

pytestmark = pytest.mark.integration

#: Passwords PostgreSQL takes and SASLprep refuses, by role.
PASSWORDS = {
    "tab": "pass\tword",
    "emoji": "p\U0001f600ssword",
}
#: The same, without the TAB or the emoji.
WRONG = {"tab": "password", "emoji": "pssword"}


class PostgreSQLParityTests(TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        self.data = self.dir / "data"
        result = keycard("init", str(self.data))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.pg = postgres(self.addCleanup)
        for password in PASSWORDS.values():
            self.assertRaises(ValueError, saslprep, password)

    async def startBouncer(self) -> str:
        port = freePort()
        listen = f"tcp:{port}:interface=127.0.0.1"
        process = bouncer(self.data, listen, self.dir / "bouncer.log")
        self.addCleanup(process.stop)
        await started(process, port)
        return f"tcp:127.0.0.1:{port}"

    def login(self, connect: str, user: str, password: str) -> object:
        return keycard(
            "login", "--connect", connect, "--kind", "scram", user,
            stdin=password + "\n",
        )  # fmt: skip

    def test_postgresqlVerifiersLogInHere(self) -> Deferred[None]:
        """
        The verifiers PostgreSQL stores for roles whose passwords have a
        TAB or an emoji, copied to the users file, let our client log in
        to a bouncer with those passwords, and not without the TAB or the
        emoji.  scramp's server, given the same verifier, takes our
        client's proof, and our client its signature.
        """

        async def go() -> None:
            users = []
            for role, password in PASSWORDS.items():
                self.pg.sql(f"CREATE ROLE {role} LOGIN PASSWORD :'pw';", pw=password)
                login = self.pg.login(role, password)
                self.assertEqual(login.stdout.strip(), role, login.stderr)
                verifier = self.pg.verifier(role)
                self.assertTrue(verifier.startswith("SCRAM-SHA-256$"), verifier)
                users.append(f"{role}:{verifier}\n")
                parsed = Verifier.fromString(verifier)
                info = (
                    parsed.salt, parsed.storedKey, parsed.serverKey,
                    parsed.iterations,
                )  # fmt: skip
                keycard = ourClientLogin(SCRAMAnswerer(role, password), info)
                self.assertTrue((keycard.serverFinal or "").startswith("v="))
            (self.data / "users.scram").write_text("".join(users))
            connect = await self.startBouncer()
            for role, password in PASSWORDS.items():
                result = self.login(connect, role, password)
                out = getattr(result, "stdout", "") + getattr(result, "stderr", "")
                self.assertEqual(getattr(result, "returncode", None), 0, out)
                self.assertIn(f"avatar id:  {role}", out)
            for role, wrong in WRONG.items():
                result = self.login(connect, role, wrong)
                self.assertEqual(getattr(result, "returncode", None), 1)

        return ensureDeferred(go())

    def test_ourVerifiersLogInToPostgreSQL(self) -> None:
        """
        C{keycard user add} takes those passwords, and the verifiers it
        writes, set as the roles' passwords, let libpq (psql) log in to
        PostgreSQL with them, and not without the TAB or the emoji.
        """
        for role, password in PASSWORDS.items():
            result = keycard(
                "user", "add", "--data-dir", str(self.data), role,
                stdin=password + "\n",
            )  # fmt: skip
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        lines = (self.data / "users.scram").read_text().splitlines()
        verifiers = dict(line.split(":", 1) for line in lines)
        for role, password in PASSWORDS.items():
            self.pg.sql(
                f"CREATE ROLE {role} LOGIN PASSWORD :'verifier';",
                verifier=verifiers[role],
            )
            self.assertEqual(self.pg.verifier(role), verifiers[role])
            login = self.pg.login(role, password)
            self.assertEqual(login.returncode, 0, login.stderr)
            self.assertEqual(login.stdout.strip(), role)
            wrong = self.pg.login(role, WRONG[role])
            self.assertNotEqual(wrong.returncode, 0)
            self.assertIn("password authentication failed", wrong.stderr)

    def test_scrampRefusesThem(self) -> None:
        """
        scramp (1.5), the independent implementation in the tests, refuses
        these passwords as a client: its server is what agrees with
        PostgreSQL here (see L{test_postgresqlVerifiersLogInHere}).
        """
        for password in PASSWORDS.values():
            self.assertRaises(
                scramp.ScramException,
                scramp.ScramClient,
                ["SCRAM-SHA-256"],
                "user",
                password,
            )
